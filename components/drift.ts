// Drift: what multiwan owns on a gateway, as the probe (probe-protocol.ts) saw it, against what
// its pushed bundle says. Expected rules, routes, tables and installed files are the bundle's own
// files (the bytes that were pushed); which tables, priorities, variants, sysctls and hooks are ours
// comes from its manifest. Every balancing variant the health daemon may have swapped in counts as
// in sync; a host rule above one of our hooks that keeps packets from it does not.
import { readManifest, type Manifest, type ManifestFamily } from "./manifest";
import { familySections, parseProbe, parseSysctls, systemFiles, type GatewayProbe } from "./probe-protocol";
import type { Bundle } from "./render";
import { shadowingRules } from "./shadowing";

export interface DriftReport {
  status: "in-sync" | "drifted" | "unreachable";
  /** One line per difference: `missing iptables mangle: -A MWAN-PRE …`. */
  drift: string[];
  /** The balancing variant found on the gateway (the health daemon's choice), if any matched. */
  variant?: string;
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
  const manifest = readManifest(p.files);
  const live = parseProbe(output);
  const drift: string[] = [];
  // The health daemon swaps the same variant into every family: the one whose files match in all
  // (a family some links do not carry has the same rules under several keys).
  const found = manifest.families.map((f) => compareFamily(manifest, f, p.files, live, drift));
  const variant = manifest.variants.find((key) => found.every((keys) => keys.includes(key)));
  listDiff("rt_tables", p.files["rt_tables"].split("\n").filter((l) => l.trim()), live.get("rt_tables") ?? [], drift);

  // sha256sum lines: 64 hex digits, two spaces, the path.
  const hashes = (area: string) => new Map((live.get(area) ?? []).map((l) => [l.slice(66), l.slice(0, 64)]));
  const fileDiff = (path: string, have: string | undefined, text: string) => {
    if (have === undefined) drift.push(`missing file: ${path}`);
    else if (have !== sha256(text)) drift.push(`changed file: ${path}`);
  };
  const installed = hashes("files");
  for (const [name, text] of Object.entries(p.files)) fileDiff(`${manifest.paths.installDir}/${name}`, installed.get(`./${name}`), text);
  const system = hashes("system files");
  for (const { file, path } of systemFiles(manifest)) fileDiff(path, system.get(path), p.files[file] ?? "");

  const sysctls = parseSysctls(live);
  for (const { key, value } of manifest.sysctls) {
    const have = sysctls.get(key);
    if (have !== value) drift.push(`changed sysctl: ${key} is ${have ?? "unreadable"}, the bundle sets ${value}`);
  }
  const daemon = live.get("daemon")?.[0] ?? "unknown";
  if (daemon !== "active") drift.push(`stopped health daemon: multiwan-health is ${daemon}`);

  return { status: drift.length ? "drifted" : "in-sync", drift, ...(variant ? { variant } : {}) };
}

/**
 * One family's rules (any planned variant in the balancing chains), hooks not shadowed, policy
 * rules and link routes; differences are pushed to `drift`. Returns the keys of the variants whose
 * balancing chains are in place.
 */
function compareFamily(manifest: Manifest, f: ManifestFamily, files: Bundle, live: Map<string, string[]>, drift: string[]): string[] {
  const names = familySections(f.family);
  const tool = names.table("").trim();
  const wantTables = restoreTables(files[f.rulesFile] ?? "");
  // The balancing chains as one text, or undefined when one of them is not there at all.
  const balancing = (chains: Map<string, string[]>) =>
    f.balanceChains.every((c) => chains.has(c)) ? f.balanceChains.map((c) => chains.get(c)!.join("\n")).join("\n:\n") : undefined;
  const variants = manifest.variants.map((key) => ({
    key,
    rules: balancing(chainsOf(restoreTables(files[`variants/${key}${f.variantSuffix}`] ?? "").get("mangle") ?? [])),
  }));
  let inPlace: string[] = [];

  for (const [table, wantLines] of wantTables) {
    const want = chainsOf(wantLines);
    const have = chainsOf(live.get(names.table(table)) ?? []);
    if (table === "mangle") {
      // Any planned variant is legitimate: the health daemon swaps them on failover.
      const rules = balancing(have);
      inPlace = rules === undefined ? [] : variants.filter((v) => v.rules === rules).map((v) => v.key);
    }
    for (const chain of new Set([...want.keys(), ...have.keys()])) {
      const haveRules = have.get(chain) ?? [];
      if (inPlace.length && table === "mangle" && f.balanceChains.includes(chain)) continue;
      if (!want.has(chain)) drift.push(`extra ${tool} ${table}: chain ${chain}`);
      else if (!have.has(chain)) drift.push(`missing ${tool} ${table}: chain ${chain}`);
      // Hook jumps: ours must be there; other rules in built-in chains are the host's business.
      const haveOurs = chain.endsWith("(hooks)") ? haveRules.filter((r) => want.get(chain)!.includes(r)) : haveRules;
      if (want.has(chain)) listDiff(`${tool} ${table} ${chain}`, want.get(chain)!, haveOurs, drift);
    }
  }

  const own = { interfaces: [...manifest.lan.interfaces, ...manifest.links.map((l) => l.interface)], lanNetworks: f.lanNetworks };
  for (const hook of f.hooks) {
    for (const rule of shadowingRules(live.get(names.table(hook.table)) ?? [], hook, own))
      drift.push(`shadowing ${tool} ${hook.table} ${hook.chain}: ${rule} (above the -j ${hook.target} hook: packets it matches never reach multiwan's rules)`);
  }

  const { first, last } = manifest.priorities.owned;
  const ours = (l: string) => {
    const pref = Number(/^(\d+):/.exec(l)?.[1]);
    return pref >= first && pref <= last;
  };
  listDiff(names.rules, f.rules, (live.get(names.rules) ?? []).map((l) => l.replace(/\t/g, " ")).filter(ours), drift);
  // A route through an interface without carrier is flagged `linkdown`: a link's state, not drift.
  const routes = (table: number) => (live.get(names.route(table)) ?? []).map((l) => l.replace(/ linkdown$/, ""));
  for (const r of f.routes) listDiff(`${f.family === 4 ? "route" : "IPv6 route"} table ${r.table}`, [r.route], routes(r.table), drift);
  return inPlace;
}
