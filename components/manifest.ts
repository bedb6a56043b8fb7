// manifest.json: the bundle's facts about itself (links, marks, tables, rule priorities, variants,
// installed paths), written by the planner next to the files they explain. Drift and status read
// these facts from the bundle in state instead of scraping its rendered text, so they check a
// bundle by what it says about itself, whichever multiwan pushed it.
import { FAMILIES, type Family, type FamilyFiles } from "./families";
import { LAYOUT, under, type Layout } from "./layout";
import type { Hook, Plan } from "./plan";
import type { Bundle } from "./render";
import { isRootPath, noDotDot } from "./root-path";

export const MANIFEST_FILE = "manifest.json";
/** Bumped when a field changes meaning; readers refuse formats they do not know. */
export const MANIFEST_FORMAT = 1;

export interface ManifestLink {
  name: string;
  interface: string;
  /** The mark as one number, e.g. 512, and as iptables/ip write it, `0x200/0xff00`. */
  markValue: number;
  fwmark: string;
  /** The link's value of the mark byte (markValue without the mask's zero bits), e.g. 2. */
  markByte: number;
  table: number;
  tableName: string;
  /** Addresses the health daemon pings through the link. */
  targets: string[];
  /** New connections go to the live links of the lowest tier with one. */
  tier: number;
  failback: "keep" | "move";
}

/** One address family's files and what its policy rules and link routes look like live. */
export interface ManifestFamily extends Pick<FamilyFiles, "family" | "rulesFile" | "hooksFile" | "batchFile" | "variantSuffix"> {
  lanNetworks: string[];
  /** The mangle chains each variant fills (the splits' chains): the ones a daemon swap rewrites. */
  balanceChains: string[];
  /** The jumps from built-in chains into ours. */
  hooks: Hook[];
  /** The planned policy rules as `ip rule show` prints them. */
  rules: string[];
  /** Each table's planned route as `ip route show table N` prints it. */
  routes: { table: number; route: string }[];
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  gateway: string;
  root: string;
  installDir: string;
  links: ManifestLink[];
  /** `ip rule` priorities: every rule in `owned` is multiwan's; per kind, link name → priority. */
  priorities: {
    owned: { first: number; last: number };
    suppressMain: number;
    from: Record<string, number>;
    fwmark: Record<string, number>;
  };
  /** Our bits of the packet and conntrack mark, e.g. `0xff00`. */
  markMask: string;
  /** Balancing variants, each in `variants/<key>.rules`. */
  variants: string[];
  /** The links that take new connections in a variant (config order), where they are not its live links. */
  carrying: Record<string, string[]>;
  /** The routing table of the route to nowhere (policies that refuse when no member is up). */
  unreachable?: { table: number; tableName: string };
  /** Absolute paths on the gateway (under root) of everything apply.sh and the daemon write. */
  paths: Layout;
  /** Unit names: bundle files installed into `paths.unitDir`. */
  units: { restore: string; health: string };
  /** The families the gateway routes, each with its own files, hooks, policy rules and routes. */
  families: ManifestFamily[];
  /** The LAN side: interfaces and networks whose new connections are balanced and NATed. */
  lan: { interfaces: string[]; networks: string[]; networks6: string[] };
  /** Kernel settings the rules depend on, as the bundle's sysctl.conf sets them. */
  sysctls: { key: string; value: string }[];
  /** Seconds between the health daemon's rounds: each one rewrites `paths.stateFile`. */
  health: { interval: number };
}

export function planManifest(plan: Plan): Manifest {
  const byLink = (priority: (l: Plan["links"][number]) => number | undefined) =>
    Object.fromEntries(plan.links.flatMap((l) => (priority(l) === undefined ? [] : [[l.name, priority(l)!]])));
  return {
    format: MANIFEST_FORMAT,
    gateway: plan.gateway,
    root: plan.root,
    installDir: plan.installDir,
    links: plan.links.map((l) => ({
      name: l.name,
      interface: l.interface,
      markValue: l.markValue,
      fwmark: l.fwmark,
      markByte: l.markByte,
      table: l.table,
      tableName: l.tableName,
      targets: l.targets.split(" "),
      tier: l.tier,
      failback: l.failback,
    })),
    priorities: { ...plan.priorities, from: byLink((l) => l.fromPriority), fwmark: byLink((l) => l.fwmarkPriority) },
    markMask: plan.mask,
    variants: plan.variants.map((v) => v.key),
    carrying: Object.fromEntries(plan.variants.filter((v) => v.carryingDiffers).map((v) => [v.key, v.carrying])),
    ...(plan.unreachable ? { unreachable: { table: plan.unreachable.table, tableName: plan.unreachable.tableName } } : {}),
    paths: Object.fromEntries(Object.entries(plan.layout).map(([key, path]) => [key, under(plan.root, path)])) as Layout,
    units: plan.units,
    families: plan.families.map((f) => ({
      family: f.family,
      rulesFile: f.rulesFile,
      hooksFile: f.hooksFile,
      batchFile: f.batchFile,
      variantSuffix: f.variantSuffix,
      lanNetworks: f.lanNetworks,
      balanceChains: f.balanceChains,
      hooks: f.hooks.all,
      rules: f.shown.rules,
      routes: f.shown.routes,
    })),
    lan: {
      interfaces: plan.lanInterfaces,
      networks: plan.families.find((f) => f.family === 4)?.lanNetworks ?? [],
      networks6: plan.families.find((f) => f.family === 6)?.lanNetworks ?? [],
    },
    sysctls: plan.sysctls,
    health: { interval: plan.health.interval },
  };
}

export const renderManifest = (plan: Plan): string => `${JSON.stringify(planManifest(plan), null, 2)}\n`;

/** `rule add pref 1200 fwmark … lookup 101` → what `ip rule show` prints for it. */
export function ruleShowLine(batchLine: string): string {
  const [, pref, selector] = /^rule add pref (\d+) (.*)$/.exec(batchLine)!;
  return `${pref}: ${selector.startsWith("from ") ? selector : `from all ${selector}`}`;
}

/** The IPv4 family of a bundle from before families were recorded, from its own ip.batch. */
function legacyFamily(files: Bundle, hooks: Hook[] | undefined, balanceChains: string[], lanNetworks: string[]): ManifestFamily {
  const batch = (files["ip.batch"] ?? "").split("\n");
  const { family, rulesFile, hooksFile, batchFile, variantSuffix } = FAMILIES[4];
  return {
    family, rulesFile, hooksFile, batchFile, variantSuffix,
    lanNetworks,
    balanceChains,
    hooks: hooks ?? [],
    rules: batch.filter((l) => l.startsWith("rule add ")).map(ruleShowLine),
    routes: batch.flatMap((l) => {
      const r = /^route replace (.*) table (\d+)$/.exec(l);
      return r ? [{ table: Number(r[2]), route: r[1] }] : [];
    }),
  };
}

const ABSOLUTE = /^(\/[A-Za-z0-9._-]+)+$/;
const NAME = /^[A-Za-z0-9._@+-]+$/;
const SYSCTL_KEY = /^[a-z0-9_]+(\.[a-z0-9_]+)+$/;

/**
 * The manifest of a pushed bundle, checked where its values reach a remote command (paths, unit
 * names, tables) or arithmetic (mask): the state it comes from can be edited. Throws, with what
 * to do, when there is none: a bundle pushed before manifests cannot be checked, only pushed again.
 */
export function readManifest(files: Bundle): Manifest {
  const text = files[MANIFEST_FILE];
  if (text === undefined) {
    throw new Error(`the pushed bundle has no ${MANIFEST_FILE} (an older multiwan pushed it): push it again (pulumi up) before checking it`);
  }
  let m: Manifest;
  try {
    m = JSON.parse(text);
  } catch {
    throw new Error(`the pushed bundle's ${MANIFEST_FILE} is not JSON`);
  }
  if (m?.format !== MANIFEST_FORMAT) {
    throw new Error(`the pushed bundle's ${MANIFEST_FILE} has format ${JSON.stringify(m?.format)}; this multiwan reads format ${MANIFEST_FORMAT}`);
  }
  const invalid = (field: string, value: unknown) => new Error(`invalid ${MANIFEST_FILE}: ${field} ${JSON.stringify(value)}`);
  if (typeof m.root !== "string" || !isRootPath(m.root)) throw invalid("root", m.root);
  for (const key of Object.keys(LAYOUT) as (keyof Layout)[]) {
    // A path added since the bundle was pushed: where that bundle's apply.sh would have put it.
    if (m.paths && !(key in m.paths)) (m.paths as Record<string, string>)[key] = under(m.root, LAYOUT[key]);
    const path = m.paths?.[key];
    if (typeof path !== "string" || !ABSOLUTE.test(path) || !noDotDot(path)) throw invalid(`paths.${key}`, path);
  }
  for (const unit of [m.units?.restore, m.units?.health]) if (typeof unit !== "string" || !NAME.test(unit)) throw invalid("units", m.units);
  if (!Array.isArray(m.links)) throw invalid("links", m.links);
  for (const l of m.links) {
    for (const n of [l.table, l.markValue, l.markByte]) if (!Number.isInteger(n)) throw invalid(`links ${l.name}`, l);
    if (typeof l.name !== "string") throw invalid("link name", l.name);
  }
  if (typeof m.markMask !== "string" || !/^0x[0-9a-f]{1,8}$/.test(m.markMask) || Number(m.markMask) === 0) throw invalid("markMask", m.markMask);
  const { first, last } = m.priorities?.owned ?? {};
  if (!Number.isInteger(first) || !Number.isInteger(last)) throw invalid("priorities.owned", m.priorities?.owned);
  if (!Array.isArray(m.variants)) throw invalid("variants", m.variants);
  m.carrying ??= {}; // bundles from before tiers carried on every live link
  if (m.unreachable !== undefined && !Number.isInteger(m.unreachable?.table)) throw invalid("unreachable", m.unreachable);
  // Read by status and drift; a bundle from before they were recorded cannot be checked for them.
  if (!Array.isArray(m.sysctls) || !Number.isFinite(m.health?.interval) || !(m.health.interval > 0)) {
    throw new Error(`the pushed bundle's ${MANIFEST_FILE} lacks sysctls or health (an older multiwan pushed it): push it again (pulumi up) before checking it`);
  }
  const strings = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === "string");
  m.lan.networks6 ??= [];
  if (!strings(m.lan?.interfaces) || !strings(m.lan?.networks) || !m.lan.networks.every((n) => /^[0-9.]+\/[0-9]{1,2}$/.test(n))) throw invalid("lan", m.lan);
  if (!strings(m.lan.networks6) || !m.lan.networks6.every((n) => /^[0-9a-f:]+\/[0-9]{1,3}$/.test(n))) throw invalid("lan", m.lan);
  // Bundles from before IPv6 describe IPv4 only, its policy rules and routes in ip.batch alone.
  const legacy = m as Manifest & { hooks?: Hook[]; balanceChains?: string[] };
  // (and bundles from before the split had a balancing chain of its own)
  m.families ??= [legacyFamily(files, legacy.hooks, legacy.balanceChains ?? ["MWAN-BALANCE"], m.lan.networks)];
  if (!Array.isArray(m.families)) throw invalid("families", m.families);
  for (const f of m.families) {
    const known = FAMILIES[f?.family as Family];
    if (!known || (["rulesFile", "hooksFile", "batchFile", "variantSuffix"] as const).some((k) => f[k] !== known[k])) throw invalid("families", f);
    if (!Array.isArray(f.hooks) || f.hooks.some((h) => [h?.table, h?.chain, h?.target].some((v) => typeof v !== "string"))) throw invalid("hooks", f.hooks);
    if (!Array.isArray(f.balanceChains) || !f.balanceChains.every((c) => typeof c === "string" && /^MWAN-[A-Z0-9-]+$/.test(c))) throw invalid("balanceChains", f.balanceChains);
    if (!strings(f.lanNetworks) || !strings(f.rules) || !Array.isArray(f.routes) || f.routes.some((r) => !Number.isInteger(r?.table) || typeof r.route !== "string")) throw invalid("families", f);
  }
  for (const s of m.sysctls) if (typeof s?.key !== "string" || !SYSCTL_KEY.test(s.key) || typeof s.value !== "string") throw invalid("sysctls", s);
  return m;
}
