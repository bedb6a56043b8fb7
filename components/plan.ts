// The planner: pure functions from a resolved gateway config to the view model every template
// prints. All decisions (marks, tables, priorities, the split, variants, NAT) are made here.
import { RESULT_TAG } from "./apply-result";
import { carriesIpv6, PASSIVE_DEFAULTS, QUALITY_DEFAULTS, RESERVED_TABLES, type Gateway, type Health, type Link, type Policy, type Quality } from "./config";
import { FAMILIES, type Family, type FamilyFiles } from "./families";
import { parseCidr } from "./ipv4";
import { canonical6, canonicalAddress6, nibbles6 } from "./ipv6";
import { LAYOUT, UNITS, under, type Layout } from "./layout";
import { ruleShowLine } from "./manifest";
import { BALANCE_CHAIN, planVariants, policyChain, type Variant } from "./variants";

/** Our bits of the packet/conntrack mark: host rules may use the others. */
export const MARK_MASK = 0xff00;
const hex = (n: number) => `0x${n.toString(16)}`;

/** Rule priorities: suppress (1000), then `from <address>` (1100+i), then `fwmark` (1200+i). */
const PRIORITY = { suppressMain: 1000, from: 1100, fwmark: 1200 } as const;
/** Every ip rule in this range is multiwan's: drift reports one it did not plan as extra. */
const OWNED_PRIORITIES = { first: 1000, last: 1299 } as const;
const SELECT_CHAIN = "MWAN-SELECT";

export interface PlannedLink {
  /** 1-based position: the health daemon's handle for the link. */
  index: number;
  name: string;
  interface: string;
  /** The link's value in our mark byte, e.g. `0x200/0xff00`. */
  fwmark: string;
  table: number;
  tableName: string;
  /** The link table's default route, where the gateway routes IPv4: `default via 203.0.113.1 dev wan1` (or `dev ppp0` for PPP). */
  route?: string;
  /** The chain that marks a connection for this link: where the split's rules jump. */
  markChain: string;
  /** New connections go to the live links of the lowest tier with one. */
  tier: number;
  weight: number;
  failback: "keep" | "move";
  /** The mark as one number (`ping -m`, `conntrack --mark`). */
  markValue: number;
  /** The link's value of the mark byte (config `mark`): markValue without the mask's zero bits. */
  markByte: number;
  /**
   * Per family, the sources whose traffic looks up the link's table by a `from` rule: its address
   * (not with balance.local: the gateway's own traffic then follows its mark, and a rule by address
   * would send every unbound socket, which has the main route's source, back to that one link), and
   * in IPv6 the prefix its LAN hosts appear under (a host's reverse-path check of their replies).
   */
  fromSources: Record<Family, string[]>;
  /** `ip rule` priorities: `from` (links with fromSources), `fwmark`. */
  fromPriority?: number;
  fwmarkPriority: number;
  /** Probe targets, IPv4 first, space-separated; how many of each family must answer. */
  targets: string;
  reliability: number;
  /** The daemon's figures: IPv4 targets listed, answers needed over IPv4 and over IPv6 (0: none probed). */
  probes: { count4: number; need4: number; need6: number };
  /** The link table's IPv6 default route, where the link carries IPv6. */
  route6?: string;
  /** Whether the link carries IPv6 (the gateway routes it and the link has IPv6 settings). */
  carries6: boolean;
  /** IPv6 translation and its values, canonical: SNAT source (masquerade), the provider's prefix (npt, none). */
  nat6: "npt" | "masquerade" | "none";
  address6?: string;
  prefix6?: string;
  /**
   * Quality limits (the link's own or health.quality) in the daemon's integers: window rounds (0:
   * off), mean round trip in µs (0: not checked), loss in ‰ (-1: not checked), and their recovery values.
   */
  quality: { window: number; latencyUs: number; lossPermille: number; recoverLatencyUs: number; recoverLossPermille: number; flush: boolean };
  /** SNAT source without prefix; undefined = MASQUERADE. */
  address?: string;
}

export { BALANCE_CHAIN, type BalanceChain, type BalanceRule, type Variant } from "./variants";

export interface Hook {
  table: "mangle" | "nat";
  chain: string;
  target: string;
}

/** The only rules multiwan puts in built-in chains: one jump each into its own chains. */
const HOOKS: Hook[] = [
  { table: "mangle", chain: "PREROUTING", target: "MWAN-PRE" },
  { table: "mangle", chain: "OUTPUT", target: "MWAN-OUT" },
  { table: "nat", chain: "POSTROUTING", target: "MWAN-POST" },
];
/** IPv6 with `nat6: npt`: inbound to a link's prefix is mapped onto the LAN before routing. */
const NAT_PRE_HOOK: Hook = { table: "nat", chain: "PREROUTING", target: "MWAN-NATPRE" };

/** What one address family's rules, policy rules and routes hold: one set of bundle files. */
export interface FamilyPlan extends FamilyFiles {
  /** All hooks (the hooks file), and per table (the rules file). */
  hooks: { all: Hook[]; mangle: Hook[]; nat: Hook[] };
  lanNetworks: string[];
  /** Destinations never balanced: the LAN networks, then the exclusions, then what no uplink carries. */
  bypass: string[];
  /** MWAN-CLASSIFY after the bypass: each policy's matches (first match wins), then the default balancing. */
  classify: { match: string; target: string }[];
  /** With balance.protocols/ports: MWAN-SELECT, the default balancing's selection (the rest follows the main table). */
  select?: { chain: string; rules: { match: string; target: string }[] };
  /** PREROUTING: a NEW connection arriving on a link is marked for that link (inbound stickiness). */
  inbound: PlannedLink[];
  /** OUTPUT: gateway-originated traffic is classified and balanced too. */
  local: boolean;
  /**
   * OUTPUT: sockets bound to a link's address stay on that link. An unbound socket has the source
   * of the main table's route, through that route's interface: not pinned (`! -o`), so balanced.
   */
  pinnedSources: { source: string; interface: string; fwmark: string }[];
  /** MWAN-POST: each link's translation of what leaves through it. */
  nat: { match: string; target: string }[];
  /** MWAN-NATPRE (IPv6 npt): inbound to a link's prefix, mapped onto the LAN network. */
  natPre: { match: string; target: string }[];
  ipRules: string[];
  ipRoutes: string[];
  ipUndo: string[];
  /** What `ip rule show` and `ip route show table N` print for the planned ones: drift's expectation. */
  shown: { rules: string[]; routes: { table: number; route: string }[] };
  /** The balancing chains every variant of the family declares (one set, so a swap empties what it does not use). */
  balanceChains: string[];
  /** Balancing with every link up: what the rules file carries. */
  balance: Variant;
  /**
   * One per non-empty set of live links, plus `none` (every link down): the same keys in each
   * family, each balancing over its live links that carry the family.
   */
  variants: Variant[];
}

export interface Plan {
  gateway: string;
  root: string;
  /** Where apply.sh installs the bundle: `<root>/etc/multiwan`. */
  installDir: string;
  /** Installed paths relative to root: scripts print `$root/<path>`, the manifest records them. */
  layout: Layout;
  units: typeof UNITS;
  /** The tag of apply.sh's one machine-readable line on stdout. */
  resultTag: string;
  mask: string;
  links: PlannedLink[];
  lanInterfaces: string[];
  /** The LAN networks of both families (the daemon's failback deletes their connections). */
  lanNetworks: string[];
  /** The families the gateway routes, IPv4 first: one set of bundle files each. */
  families: FamilyPlan[];
  /** Both families' files and tools, whether routed or not: apply.sh removes a family a new bundle drops. */
  allFamilies: FamilyFiles[];
  /**
   * The mark, table and rule that route a connection nowhere, for policies that refuse: `prohibit`
   * answers with an ICMP error both TCP and connected UDP sockets take as fatal (an `unreachable`
   * route's host-unreachable is soft: a UDP client would only time out).
   */
  unreachable?: { fwmark: string; table: number; tableName: string; priority: number };
  priorities: { owned: { first: number; last: number }; suppressMain: number };
  health: Omit<Health, "passive"> & { markMask: number; timeoutMs: number; roundLag: number; passive?: PlannedPassive };
  sysctls: { key: string; value: string }[];
  /** The split's entry chain (BALANCE_CHAIN). */
  balanceChain: string;
  /** The variants' keys and what each carries (in the first family): what the daemon picks from. */
  variants: Variant[];
}

/** Port lists as multiport fragments: at most 15 ports per rule, a range counting as two. */
function portChunks(ports: (number | string)[]): string[] {
  const chunks: string[] = [];
  let current: string[] = [];
  let used = 0;
  for (const p of ports) {
    const text = String(p).replace("-", ":");
    const cost = text.includes(":") ? 2 : 1;
    if (used + cost > 15) {
      chunks.push(current.join(","));
      current = [];
      used = 0;
    }
    current.push(text);
    used += cost;
  }
  chunks.push(current.join(","));
  return chunks;
}

/** ICMP is its own protocol in IPv6: ip6tables-save names it `ipv6-icmp`. */
const protocolName = (p: string, family: Family) => (family === 6 && p === "icmp" ? "ipv6-icmp" : p);

function planSelect(protocols: string[] | undefined, ports: (number | string)[] | undefined, family: Family): string[] {
  if (!ports) return protocols ? protocols.map((p) => `-p ${protocolName(p, family)} `) : [""];
  return (protocols ?? ["tcp", "udp"]).flatMap((p) =>
    portChunks(ports).map((list) => `-p ${p} -m multiport --dports ${list} `),
  );
}

function planQuality(q: Quality | undefined): PlannedLink["quality"] {
  if (!q) return { window: 0, latencyUs: 0, lossPermille: -1, recoverLatencyUs: 0, recoverLossPermille: -1, flush: false };
  const ms = (v: number | undefined) => (v === undefined ? 0 : Math.round(v * 1000));
  const permille = (v: number | undefined) => (v === undefined ? -1 : Math.round(v * 10));
  return {
    window: q.window ?? QUALITY_DEFAULTS.window,
    latencyUs: ms(q.latencyMs),
    lossPermille: permille(q.lossPercent),
    recoverLatencyUs: ms(q.recoverLatencyMs ?? (q.latencyMs === undefined ? undefined : q.latencyMs * 0.8)),
    recoverLossPermille: permille(q.recoverLossPercent ?? (q.lossPercent === undefined ? undefined : q.lossPercent / 2)),
    flush: q.flushConntrack ?? QUALITY_DEFAULTS.flushConntrack,
  };
}

/**
 * Passive detection in the daemon's terms: its awk program reads conntrack events, so the LAN's
 * networks come as `base:size` integer pairs and each link as `markByte:position`.
 */
export interface PlannedPassive {
  connections: number;
  replyMs: number;
  /** Unanswered connections older than this are forgotten (a destination that never answers). */
  forgetMs: number;
  lanBlocks: string;
  /** The IPv6 LAN networks as `<32 hex digits>:<prefix length>`. */
  lanPrefixes6: string;
  linkMarks: string;
  /** The mark byte's unit in a connmark (MARK_MASK's lowest bit). */
  markUnit: number;
}

function planPassive(gw: Gateway, links: PlannedLink[]): PlannedPassive | undefined {
  const passive = gw.health.passive;
  // One link has nowhere to fail over to; probes alone decide.
  if (passive === false || links.length < 2) return undefined;
  const lanBlocks = gw.lan.networks.map((net) => {
    const s = parseCidr(net);
    return `${s.network}:${s.broadcast - s.network + 1}`;
  });
  const { connections, replyMs } = { ...PASSIVE_DEFAULTS, ...(passive === true ? {} : passive) };
  return {
    connections,
    replyMs,
    forgetMs: Math.max(3000, 4 * replyMs),
    lanBlocks: lanBlocks.join(" "),
    lanPrefixes6: gw.lan.networks6.map(nibbles6).join(" "),
    linkMarks: links.map((l) => `${l.markByte}:${l.index}`).join(" "),
    markUnit: MARK_MASK & -MARK_MASK,
  };
}

function planLink(link: Link, position: number, quality: Quality | undefined, routes4: boolean, routes6Gateway: boolean, local: boolean): PlannedLink {
  const routes6 = routes6Gateway && carriesIpv6(link);
  const address = link.address?.split("/")[0];
  const address6 = link.address6 && canonicalAddress6(link.address6.split("/")[0]);
  const prefix6 = link.prefix6 && canonical6(link.prefix6);
  const defaultRoute = (via: string | undefined) => `default ${via ? `via ${via} ` : ""}dev ${link.interface}`;
  const fromSources = {
    4: address && !local ? [address] : [],
    6: routes6 ? [...(address6 && !local ? [address6] : []), ...(prefix6 ? [prefix6] : [])] : [],
  };
  return {
    index: position + 1,
    name: link.name,
    interface: link.interface,
    fwmark: `${hex(link.mark << 8)}/${hex(MARK_MASK)}`,
    markChain: `MWAN-MARK-${position + 1}`,
    tier: link.tier,
    weight: link.weight,
    failback: link.failback,
    quality: planQuality(link.quality ?? quality),
    table: link.table,
    tableName: `mwan_${link.name}`,
    ...(routes4 ? { route: defaultRoute(link.gateway) } : {}),
    markValue: link.mark << 8,
    markByte: link.mark,
    fromSources,
    ...(fromSources[4].length || fromSources[6].length ? { fromPriority: PRIORITY.from + position } : {}),
    fwmarkPriority: PRIORITY.fwmark + position,
    targets: [...(link.check.targets ?? []), ...(link.check.targets6 ?? []).map(canonicalAddress6)].join(" "),
    reliability: link.check.reliability,
    probes: {
      count4: link.check.targets?.length ?? 0,
      need4: link.check.targets?.length ? link.check.reliability : 0,
      need6: link.check.targets6?.length ? link.check.reliability : 0,
    },
    address,
    ...(routes6 ? { route6: defaultRoute(link.gateway6 && canonicalAddress6(link.gateway6)) } : {}),
    carries6: routes6,
    nat6: link.nat6 ?? "masquerade",
    ...(address6 ? { address6 } : {}),
    ...(prefix6 ? { prefix6 } : {}),
  };
}

/** The lowest mark byte and table no link uses, for the route to nowhere. */
function planUnreachable(links: Link[]): Plan["unreachable"] {
  let markByte = 1;
  while (links.some((l) => l.mark === markByte)) markByte++;
  let table = 101;
  while (links.some((l) => l.table === table) || RESERVED_TABLES.includes(table)) table++;
  // Its table's name is one no link's (mwan_<name>) can be.
  return { fwmark: `${hex(markByte << 8)}/${hex(MARK_MASK)}`, table, tableName: "mwan.unreachable", priority: PRIORITY.fwmark + links.length };
}

/**
 * A policy's matches as MWAN-CLASSIFY rule prefixes in one family: every combination of its lists,
 * in iptables-save's order. A policy that names addresses of the other family only takes nothing here.
 */
function policyMatches(policy: Policy, family: Family): string[] {
  const { lanInterfaces, protocols, ports } = policy.match;
  const [sources, destinations, otherSources, otherDestinations] = family === 4
    ? [policy.match.sources, policy.match.destinations, policy.match.sources6, policy.match.destinations6]
    : [policy.match.sources6?.map(canonical6), policy.match.destinations6?.map(canonical6), policy.match.sources, policy.match.destinations];
  if (!sources && !destinations && (otherSources || otherDestinations)) return [];
  const each = (list: string[] | undefined, option: string) => (list ? list.map((x) => `${option} ${x} `) : [""]);
  return each(sources, "-s").flatMap((s) =>
    each(destinations, "-d").flatMap((d) => each(lanInterfaces, "-i").flatMap((i) => planSelect(protocols, ports, family).map((p) => s + d + i + p))),
  );
}

/**
 * Destinations no uplink carries: multicast and the limited broadcast (mDNS, SSDP, DHCP) are
 * tracked as new connections too, and without these bypass rules each would take a slot of the
 * split (and a link's mark) without ever leaving through it. In IPv6: multicast and link-local.
 */
const NOT_FOR_UPLINKS: Record<Family, string[]> = { 4: ["224.0.0.0/4", "255.255.255.255/32"], 6: ["ff00::/8", "fe80::/10"] };

/** What `ip route show table N` prints: an IPv4 device route with its scope, an IPv6 route with its default metric and preference. */
function shownRoute(route: string, family: Family): string {
  const device = route.startsWith("default dev ");
  if (family === 4) return device ? `${route} scope link` : route;
  return `${route.startsWith("prohibit ") ? `${route} dev lo` : route} metric 1024 pref medium`;
}

/**
 * The variants of a family that only some links carry, under every link's keys: live links that
 * carry the family take its new connections; none of them live is that family's `none`.
 */
function everyKey(allLinks: PlannedLink[], own: Variant[], links: PlannedLink[]): Variant[] {
  const byKey = new Map(own.map((v) => [v.key, v]));
  // planVariants' order: each non-empty subset by its bit mask over the links, then none.
  const sets = Array.from({ length: (1 << allLinks.length) - 1 }, (_, i) => allLinks.filter((_, k) => (i + 1) & (1 << k)).map((l) => l.name));
  const keys = [...sets.map((live) => ({ key: live.join("+"), live })), { key: "none", live: [] as string[] }];
  return keys.map(({ key, live }) => {
    const mine = live.filter((name) => links.some((l) => l.name === name));
    return { ...byKey.get(key === "none" || !mine.length ? "none" : mine.join("+"))!, key, live };
  });
}

/** Everything the gateway's rules, policy rules and routes hold in one family. */
function planFamily(gw: Gateway, family: Family, allLinks: PlannedLink[], unreachable: Plan["unreachable"]): FamilyPlan {
  const { balance } = gw;
  const v6 = family === 6;
  // The links of this family; the variants keep every link's key (the daemon knows one live set).
  const links = v6 ? allLinks.filter((l) => l.carries6) : allLinks;
  const lanNetworks = v6 ? gw.lan.networks6.map(canonical6) : gw.lan.networks;
  // What the default balancing takes: everything, or (balance.protocols/ports) what MWAN-SELECT
  // passes on; a policy that falls back with no member up goes there too.
  const selection = planSelect(balance.protocols, balance.ports, family);
  const select = selection.join() === "" ? undefined : { chain: SELECT_CHAIN, rules: selection.map((match) => ({ match, target: BALANCE_CHAIN })) };
  const defaultEntry = select ? SELECT_CHAIN : BALANCE_CHAIN;
  const policies = links === allLinks ? balance.policies : balance.policies.map((p) => (p.members ? { ...p, members: p.members.filter((m) => links.some((l) => l.name === m.link)) } : p));
  const own = planVariants(links, policies, balance.lastResort, defaultEntry, unreachable?.fwmark, family);
  const variants = links === allLinks ? own : everyKey(allLinks, own, links);
  // A LAN network numbered from a provider (nat6 none) can only leave through that provider's link.
  const pinned = v6 ? links.filter((l) => l.nat6 === "none" && l.prefix6) : [];
  // A policy none of whose members carries this family takes none of its connections.
  const takes = (p: Policy, i: number) => !p.members || policies[i].members!.length > 0;
  const classify = [
    ...pinned.map((l) => ({ match: `-s ${l.prefix6} `, target: l.markChain })),
    ...balance.policies.flatMap((p, i) => (takes(p, i) ? policyMatches(p, family) : []).map((match) => ({ match, target: policyChain(i + 1) }))),
    { match: "", target: defaultEntry },
  ];

  // Matches in iptables-save's own order (-s, -d, -i, -o, then -m), so the saved chain reads as rendered.
  const translated = lanNetworks.filter((net) => !pinned.some((l) => l.prefix6 === net));
  // Masquerading: to the link's given address, else the interface's (also for what a `none`
  // link carries from other LAN networks, and the gateway's own traffic on an npt link).
  const address = (l: PlannedLink) => (v6 ? l.address6 : l.address);
  const masquerade = (l: PlannedLink) => (address(l) ? `SNAT --to-source ${address(l)}` : "MASQUERADE");
  const nat = links.flatMap((l) => [
    ...translated.map((net) => ({ match: `-s ${net} -o ${l.interface}`, target: v6 && l.nat6 === "npt" ? `NETMAP --to ${l.prefix6}` : masquerade(l) })),
    // Gateway-originated traffic re-routed by its mark still carries the first route's source.
    ...(balance.local ? [{ match: `-o ${l.interface} -m addrtype --src-type LOCAL`, target: masquerade(l) }] : []),
  ]);
  const natPre = v6 ? links.filter((l) => l.nat6 === "npt").map((l) => ({ match: `-d ${l.prefix6} -i ${l.interface}`, target: `NETMAP --to ${translated[0]}` })) : [];
  // Hooked in every IPv6 bundle, empty without npt: the hook set never changes, so no apply has
  // to take away a hook its bundle does not know.
  const hooks = v6 ? [...HOOKS, NAT_PRE_HOOK] : HOOKS;

  const ipRules = [
    // Main-table routes more specific than a default (LAN, connected, static) win over every
    // link table, so replies to the LAN never leave through a WAN.
    `rule add pref ${PRIORITY.suppressMain} lookup main suppress_prefixlength 0`,
    ...links.flatMap((l) => l.fromSources[family].map((from) => `rule add pref ${l.fromPriority} from ${from} lookup ${l.table}`)),
    ...links.map((l) => `rule add pref ${l.fwmarkPriority} fwmark ${l.fwmark} lookup ${l.table}`),
    ...(unreachable ? [`rule add pref ${unreachable.priority} fwmark ${unreachable.fwmark} lookup ${unreachable.table}`] : []),
  ];
  const routes = [
    ...links.map((l) => ({ table: l.table, route: (v6 ? l.route6 : l.route)! })),
    ...(unreachable ? [{ table: unreachable.table, route: "prohibit default" }] : []),
  ];
  const ipRoutes = routes.map((r) => `route replace ${r.route} table ${r.table}`);
  const ipUndo = [
    ...ipRules.map((r) => r.replace(/^rule add/, "rule del")),
    ...routes.map((r) => `route flush table ${r.table}`),
  ];

  return {
    ...FAMILIES[family],
    hooks: { all: hooks, mangle: hooks.filter((h) => h.table === "mangle"), nat: hooks.filter((h) => h.table === "nat") },
    lanNetworks,
    bypass: [...lanNetworks, ...(v6 ? balance.exclude6.map(canonical6) : balance.exclude), ...NOT_FOR_UPLINKS[family]],
    classify,
    select,
    inbound: balance.inboundSticky ? links : [],
    local: balance.local,
    pinnedSources: balance.local
      ? links.flatMap((l) => (address(l) ? [{ source: `${address(l)}/${v6 ? 128 : 32}`, interface: l.interface, fwmark: l.fwmark }] : []))
      : [],
    nat,
    natPre,
    ipRules,
    ipRoutes,
    ipUndo,
    shown: { rules: ipRules.map(ruleShowLine), routes: routes.map((r) => ({ table: r.table, route: shownRoute(r.route, family) })) },
    balanceChains: own[0].chains.map((c) => c.name),
    balance: variants[variants.length - 2],
    variants,
  };
}

export function planGateway(gw: Gateway): Plan {
  const routes6 = gw.lan.networks6.length > 0;
  const links = gw.links.map((l, i) => planLink(l, i, gw.health.quality, gw.lan.networks.length > 0, routes6, gw.balance.local));
  const unreachable = gw.balance.policies.some((p) => p.whenDown === "unreachable") ? planUnreachable(gw.links) : undefined;
  const families = ([4, 6] as const).filter((f) => (f === 4 ? gw.lan.networks : gw.lan.networks6).length > 0).map((f) => planFamily(gw, f, links, unreachable));

  return {
    gateway: gw.name,
    root: gw.root,
    installDir: under(gw.root, LAYOUT.installDir),
    layout: LAYOUT,
    units: UNITS,
    resultTag: RESULT_TAG,
    mask: hex(MARK_MASK),
    links,
    lanInterfaces: gw.lan.interfaces,
    lanNetworks: families.flatMap((f) => f.lanNetworks),
    families,
    allFamilies: Object.values(FAMILIES),
    unreachable,
    priorities: { owned: OWNED_PRIORITIES, suppressMain: PRIORITY.suppressMain },
    health: {
      ...gw.health,
      markMask: MARK_MASK,
      timeoutMs: Math.round(gw.health.timeout * 1000),
      // Rounds after which a round that wrote no result is counted failed: its probes outlived the timeout.
      roundLag: Math.ceil(gw.health.timeout / gw.health.interval) + 2,
      passive: planPassive(gw, links),
    },
    sysctls: [
      ...(gw.lan.networks.length ? [
        { key: "net.ipv4.ip_forward", value: "1" },
        // rp_filter checks a reply against the tables *with* its mark only when this is set;
        // without it a strict rp_filter drops every reply that arrives on a non-default link.
        { key: "net.ipv4.conf.all.src_valid_mark", value: "1" },
      ] : []),
      // IPv6 has no rp_filter; forwarding on also makes the kernel ignore router advertisements
      // on interfaces whose accept_ra is 1 (see the README on RA-configured uplinks).
      ...(routes6 ? [{ key: "net.ipv6.conf.all.forwarding", value: "1" }] : []),
    ],
    balanceChain: BALANCE_CHAIN,
    variants: families[0].variants,
  };
}
