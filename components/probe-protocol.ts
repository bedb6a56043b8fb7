// The read-only probe protocol: one shell command prints each part of a gateway's live state under
// a marker line, parseProbe splits the output again. Every value put into a command comes from the
// bundle's manifest, checked by readManifest (state can be edited); the comparison is in drift.ts.
import { FAMILIES, type Family } from "./families";
import { readManifest, type Manifest } from "./manifest";
import type { Bundle } from "./render";

export interface GatewayProbe {
  /** The pushed bundle: its manifest says where everything is. */
  files: Bundle;
}

const SECTION = "@@multiwan@@";

/** A part of a probe's output, under its marker line. */
export const section = (name: string, command: string) => `echo '${SECTION} ${name}'; ${command}`;

/** `active` when the gateway's health daemon runs (systemd, or apply.sh's pid file), else not. */
export function daemonSection(m: Manifest): string {
  return section(
    "daemon",
    `if [ -d /run/systemd/system ] && [ '${m.root}' = / ]; then systemctl is-active ${m.units.health}; ` +
      `elif pid=$(cat ${m.paths.pidFile} 2>/dev/null) && grep -q health.sh /proc/$pid/cmdline 2>/dev/null; ` +
      `then echo active; else echo inactive; fi`,
  );
}

/** The live values of the manifest's sysctls, as `key = value` lines (an unreadable key: no line). */
export function sysctlSection(m: Manifest): string {
  return section("sysctl", `sysctl ${m.sysctls.map((s) => s.key).join(" ")} 2>/dev/null`);
}

/** Live sysctl values from a probe's output: key → value. */
export function parseSysctls(probe: Map<string, string[]>): Map<string, string> {
  return new Map((probe.get("sysctl") ?? []).flatMap((l) => {
    const kv = /^(\S+) = (.*)$/.exec(l);
    return kv ? [[kv[1], kv[2]] as const] : [];
  }));
}

/** Bundle files installed outside the install dir (units, the sysctl.d file), by bundle name. */
export function systemFiles(m: Manifest): { file: string; path: string }[] {
  return [
    { file: "sysctl.conf", path: m.paths.sysctl },
    ...[m.units.restore, m.units.health].map((unit) => ({ file: unit, path: `${m.paths.unitDir}/${unit}` })),
  ];
}

/** Section names of one family's live state: `iptables mangle` / `ip6tables mangle`, `ip rule` / `ip -6 rule`, `route 101` / `route6 101`. */
export const familySections = (family: Family) => ({
  table: (table: string) => `${FAMILIES[family].save.replace(/-save$/, "")} ${table}`,
  rules: family === 4 ? "ip rule" : "ip -6 rule",
  route: (table: number) => `route${family === 4 ? "" : "6"} ${table}`,
});

/** What drift compares: rules, policy rules, link tables' routes, rt_tables, installed files, sysctls, daemon. */
export function probeCommand(p: GatewayProbe): string {
  const m = readManifest(p.files);
  return [
    ...m.families.flatMap((f) => {
      const names = familySections(f.family);
      const { save, ipFlag } = FAMILIES[f.family];
      return [
        section(names.table("mangle"), `${save} -t mangle`),
        section(names.table("nat"), `${save} -t nat`),
        section(names.rules, `ip ${ipFlag} rule show`),
        ...f.routes.map((r) => section(names.route(r.table), `ip ${ipFlag} route show table ${r.table} 2>/dev/null`)),
      ];
    }),
    section("rt_tables", `cat ${m.paths.rtTables} 2>/dev/null`),
    section("files", `cd ${m.paths.installDir} 2>/dev/null && find . -type f | sort | xargs -r sha256sum`),
    section("system files", `sha256sum ${systemFiles(m).map((f) => f.path).join(" ")} 2>/dev/null`),
    sysctlSection(m),
    daemonSection(m),
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
