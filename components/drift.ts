// Drift: what multiwan owns on a gateway, observed over SSH, against what its bundle says. The
// expectation comes from the bundle's own files (what was pushed), so a probe needs nothing else;
// every balancing variant the health daemon may have swapped in counts as in sync.
import type { Bundle } from "./render";

export interface GatewayProbe {
  /** The pushed bundle. */
  files: Bundle;
  installDir: string;
  root: string;
}

export interface DriftReport {
  status: "in-sync" | "drifted" | "unreachable";
  /** One line per difference: `missing iptables mangle: -A MWAN-PRE …`. */
  drift: string[];
  /** The balancing variant found on the gateway (the health daemon's choice), if any matched. */
  variant?: string;
}

const SECTION = "@@multiwan@@";
const tables = (files: Bundle) => [...files["ip.batch"].matchAll(/ table (\d+)$/gm)].map((m) => m[1]);
const ROOT = /^\/([A-Za-z0-9._-]+\/?)*$/;

/** The root prefix as it goes into a remote command (it comes from state, which can be edited). */
export function rootDir(root: string): string {
  if (!ROOT.test(root) || root.split("/").includes("..")) throw new Error(`invalid root: ${JSON.stringify(root)}`);
  return root.replace(/\/$/, "");
}

/** A part of a probe's output, under its marker line; parseProbe splits them again. */
export const section = (name: string, command: string) => `echo '${SECTION} ${name}'; ${command}`;

/** `active` when the gateway's health daemon runs (systemd, or apply.sh's pid file), else not. */
export function daemonSection(root: string): string {
  return section(
    "daemon",
    `if [ -d /run/systemd/system ] && [ '${root}' = / ]; then systemctl is-active multiwan-health.service; ` +
      `elif pid=$(cat ${rootDir(root)}/run/multiwan/health.pid 2>/dev/null) && grep -q health.sh /proc/$pid/cmdline 2>/dev/null; ` +
      `then echo active; else echo inactive; fi`,
  );
}

/**
 * One shell command printing each part of the live state under a marker line. It only reads
 * (iptables-save, ip, cat, sha256sum): the comparison happens here, in TypeScript.
 */
export function probeCommand(p: GatewayProbe): string {
  const root = rootDir(p.root);
  return [
    section("iptables mangle", "iptables-save -t mangle"),
    section("iptables nat", "iptables-save -t nat"),
    section("ip rule", "ip rule show"),
    ...tables(p.files).map((t) => section(`route ${t}`, `ip route show table ${t} 2>/dev/null`)),
    section("rt_tables", `cat ${root}/etc/iproute2/rt_tables.d/multiwan.conf 2>/dev/null`),
    section("files", `cd ${p.installDir} 2>/dev/null && find . -type f | sort | xargs -r sha256sum`),
    daemonSection(p.root),
    "true",
  ].join("\n");
}

/** Probe output → section name → its lines. */
export function parseProbe(output: string): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of output.split("\n")) {
    if (line.startsWith(`${SECTION} `)) sections.set(line.slice(SECTION.length + 1), (current = []));
    else if (current && line.trim() !== "") current.push(line.replace(/\s+$/, ""));
  }
  return sections;
}

/** Chain → ordered rules, for our chains and the hook jumps into them, from iptables-save text. */
function chainsOf(lines: string[]): Map<string, string[]> {
  const chains = new Map<string, string[]>();
  for (const line of lines) {
    const declared = /^:(MWAN-\S+) /.exec(line);
    if (declared && !chains.has(declared[1])) chains.set(declared[1], []);
    const rule = /^-A (\S+) /.exec(line);
    if (rule && (rule[1].startsWith("MWAN-") || / -j MWAN-\S+$/.test(line))) {
      const chain = rule[1].startsWith("MWAN-") ? rule[1] : `${rule[1]} (hooks)`;
      chains.set(chain, [...(chains.get(chain) ?? []), line]);
    }
  }
  return chains;
}

/** The iptables-restore sections of a bundle file, table → lines, with `-I X 1` hooks as saved `-A X`. */
function restoreTables(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let table = "";
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) out.set((table = line.slice(1)), []);
    else if (table && line !== "COMMIT" && !line.startsWith("#")) out.get(table)!.push(line.replace(/^-I (\S+) 1 /, "-A $1 "));
  }
  return out;
}

/** `rule add pref 1200 fwmark … lookup 101` → what `ip rule show` prints for it. */
export function ruleShowLine(batchLine: string): string {
  const [, pref, selector] = /^rule add pref (\d+) (.*)$/.exec(batchLine)!;
  return `${pref}: ${selector.startsWith("from ") ? selector : `from all ${selector}`}`;
}

function listDiff(area: string, want: string[], have: string[], out: string[]): void {
  const missing = want.filter((l) => !have.includes(l));
  const extra = have.filter((l) => !want.includes(l));
  for (const l of missing) out.push(`missing ${area}: ${l}`);
  for (const l of extra) out.push(`extra ${area}: ${l}`);
  if (!missing.length && !extra.length && want.join("\n") !== have.join("\n")) out.push(`reordered ${area}`);
}

// Required inside the function: this module is serialized into the push provider's closure, and
// Pulumi's closure serializer cannot capture a module namespace under every loader (vitest's hangs).
const sha256 = (text: string): string => require("node:crypto").createHash("sha256").update(text).digest("hex");

export function compareProbe(p: GatewayProbe, output: string): DriftReport {
  const live = parseProbe(output);
  const drift: string[] = [];
  const wantTables = restoreTables(p.files["iptables.rules"]);
  const variants = Object.entries(p.files)
    .filter(([name]) => name.startsWith("variants/"))
    .map(([name, text]) => ({ key: name.slice("variants/".length, -".rules".length), rules: chainsOf(restoreTables(text).get("mangle")!).get("MWAN-BALANCE") ?? [] }));
  let variant: string | undefined;

  for (const [table, wantLines] of wantTables) {
    const want = chainsOf(wantLines);
    const have = chainsOf(live.get(`iptables ${table}`) ?? []);
    for (const chain of new Set([...want.keys(), ...have.keys()])) {
      const haveRules = have.get(chain) ?? [];
      if (chain === "MWAN-BALANCE") {
        // Any planned variant is legitimate: the health daemon swaps them on failover.
        variant = variants.find((v) => v.rules.join("\n") === haveRules.join("\n"))?.key;
        if (variant) continue;
      }
      if (!want.has(chain)) drift.push(`extra iptables ${table}: chain ${chain}`);
      else if (!have.has(chain)) drift.push(`missing iptables ${table}: chain ${chain}`);
      // Hook jumps: ours must be there; other rules in built-in chains are the host's business.
      const haveOurs = chain.endsWith("(hooks)") ? haveRules.filter((r) => want.get(chain)!.includes(r)) : haveRules;
      if (want.has(chain)) listDiff(`iptables ${table} ${chain}`, want.get(chain)!, haveOurs, drift);
    }
  }

  const batch = p.files["ip.batch"].split("\n");
  const ours = (l: string) => /^1[012]\d\d:/.test(l);
  listDiff("ip rule", batch.filter((l) => l.startsWith("rule add")).map(ruleShowLine), (live.get("ip rule") ?? []).map((l) => l.replace(/\t/g, " ")).filter(ours), drift);
  for (const line of batch.filter((l) => l.startsWith("route replace"))) {
    const [, route, table] = /^route replace (.*) table (\d+)$/.exec(line)!;
    listDiff(`route table ${table}`, [route], live.get(`route ${table}`) ?? [], drift);
  }
  listDiff("rt_tables", p.files["rt_tables"].split("\n").filter((l) => l.trim()), live.get("rt_tables") ?? [], drift);

  const installed = new Map((live.get("files") ?? []).map((l) => [l.slice(66).replace(/^\.\//, ""), l.slice(0, 64)]));
  for (const [name, text] of Object.entries(p.files)) {
    const have = installed.get(name);
    if (have === undefined) drift.push(`missing file: ${p.installDir}/${name}`);
    else if (have !== sha256(text)) drift.push(`changed file: ${p.installDir}/${name}`);
  }
  const daemon = live.get("daemon")?.[0] ?? "unknown";
  if (daemon !== "active") drift.push(`stopped health daemon: multiwan-health is ${daemon}`);

  return { status: drift.length ? "drifted" : "in-sync", drift, ...(variant ? { variant } : {}) };
}
