// The planner: pure functions from a resolved gateway config to the view model every template
// prints. All decisions (marks, tables, priorities, the split, variants, NAT) are made here.
import { RESULT_TAG } from "./apply-result";
import { type Gateway, type Health, type Link } from "./config";
import { LAYOUT, UNITS, under, type Layout } from "./layout";
import { planSplit, type SplitRule } from "./split";

/** Our bits of the packet/conntrack mark: host rules may use the others. */
export const MARK_MASK = 0xff00;
const hex = (n: number) => `0x${n.toString(16)}`;

/** Rule priorities: suppress (1000), then `from <address>` (1100+i), then `fwmark` (1200+i). */
const PRIORITY = { suppressMain: 1000, from: 1100, fwmark: 1200 } as const;
/** Every ip rule in this range is multiwan's: drift reports one it did not plan as extra. */
const OWNED_PRIORITIES = { first: 1000, last: 1299 } as const;

export interface PlannedLink {
  /** 1-based position: the health daemon's handle for the link. */
  index: number;
  name: string;
  interface: string;
  /** The link's value in our mark byte, e.g. `0x200/0xff00`. */
  fwmark: string;
  table: number;
  tableName: string;
  /** The link table's default route: `default via 203.0.113.1 dev wan1 table 101` (or `dev ppp0` for PPP). */
  route: string;
  /** The chain that marks a connection for this link: where the split's rules jump. */
  markChain: string;
  /** The mark as one number (`ping -m`, `conntrack --mark`). */
  markValue: number;
  /** The link's value of the mark byte (config `mark`): markValue without the mask's zero bits. */
  markByte: number;
  /** `ip rule` priorities: `from <address>` (links with an address), `fwmark`. */
  fromPriority?: number;
  fwmarkPriority: number;
  /** Probe targets, space-separated, and how many must answer. */
  targets: string;
  reliability: number;
  /** SNAT source without prefix; undefined = MASQUERADE. */
  address?: string;
  natTarget: string;
}

/** The chain new connections to balance enter; the split's other chains are `MWAN-BALANCE-<n>`. */
export const BALANCE_CHAIN = "MWAN-BALANCE";

export interface BalanceRule {
  /** The statistic match with a trailing space, or "" for the rule that takes what is left. */
  match: string;
  /** `-g <chain>` (a chain of the split, or a link's mark chain), or `-j MARK …` in place. */
  target: string;
}

export interface BalanceChain {
  name: string;
  rules: BalanceRule[];
}

export interface Variant {
  /** Live links joined by `+` in config order, or `none`: the file name the daemon picks. */
  key: string;
  live: string[];
  /** Every balancing chain of the plan, in `Plan.balanceChains` order; those this split does not use are empty. */
  chains: BalanceChain[];
  /** Rules a new connection walks through the split (its MARK included): worst and mean. */
  walk: { worst: number; mean: number };
}

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
  /** All hooks (iptables.hooks), and per table (iptables.rules). */
  hooks: { all: Hook[]; mangle: Hook[]; nat: Hook[] };
  links: PlannedLink[];
  lanInterfaces: string[];
  lanNetworks: string[];
  /** Destinations never balanced: the LAN networks, then `balance.exclude`. */
  bypass: string[];
  /** iptables match prefixes (with a trailing space), each selecting new connections to balance; "" = all. */
  select: string[];
  /** PREROUTING: a NEW connection arriving on a link is marked for that link (inbound stickiness). */
  inbound: PlannedLink[];
  /** OUTPUT: gateway-originated traffic is classified and balanced too. */
  local: boolean;
  /** OUTPUT: sockets bound to a link's address stay on that link. */
  pinnedSources: { address: string; fwmark: string }[];
  nat: { match: string; target: string }[];
  priorities: { owned: { first: number; last: number }; suppressMain: number };
  ipRules: string[];
  ipRoutes: string[];
  ipUndo: string[];
  health: Health & { markMask: number };
  sysctls: { key: string; value: string }[];
  /** The split's entry chain (BALANCE_CHAIN). */
  balanceChain: string;
  /** The balancing chains every variant declares (one set, so a swap empties what it does not use). */
  balanceChains: string[];
  /** Balancing with every link up: what iptables.rules carries. */
  balance: Variant;
  /** One per non-empty set of live links, plus `none` (every link down). */
  variants: Variant[];
}

const splitChainName = (id: number) => (id === 0 ? BALANCE_CHAIN : `${BALANCE_CHAIN}-${id}`);

/** One live-link set's split (planSplit) as rules: links by their mark chains, chains by name. */
function planVariant(links: PlannedLink[], weights: number[], live: number[]): Omit<Variant, "key" | "live"> {
  const split = planSplit(weights.map((w, i) => (live.includes(i) ? w : 0)));
  const target = (r: SplitRule) => {
    if ("chain" in r.to) return `-g ${splitChainName(r.to.chain)}`;
    // The rule that takes what is left ends its chain: it can mark in place.
    return r.every ? `-g ${links[r.to.link].markChain}` : `-j MARK --set-xmark ${links[r.to.link].fwmark}`;
  };
  return {
    chains: split.chains.map((c, id) => ({
      name: splitChainName(id),
      rules: c.rules.map((r) => ({ match: r.every ? `-m statistic --mode nth --every ${r.every} --packet 0 ` : "", target: target(r) })),
    })),
    walk: split.walk,
  };
}

function planVariants(links: PlannedLink[], weights: number[], lastResort: "all" | "main"): Variant[] {
  const variants: Variant[] = [];
  for (let mask = 1; mask < 1 << links.length; mask++) {
    const live = links.map((_, i) => i).filter((i) => mask & (1 << i));
    variants.push({ key: live.map((i) => links[i].name).join("+"), live: live.map((i) => links[i].name), ...planVariant(links, weights, live) });
  }
  // Every link down: probes can all fail because the targets (not the links) are gone, so "all"
  // keeps balancing as if every link were up; "main" leaves new connections to the main table.
  const all = variants[variants.length - 1];
  variants.push({ key: "none", live: [], ...(lastResort === "all" ? { chains: all.chains, walk: all.walk } : { chains: [], walk: { worst: 0, mean: 0 } }) });
  // One chain set for all: a swap to a variant with fewer chains empties the others.
  const count = Math.max(...variants.map((v) => v.chains.length));
  for (const v of variants) {
    v.chains = Array.from({ length: count }, (_, id) => v.chains[id] ?? { name: splitChainName(id), rules: [] });
  }
  return variants;
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

function planSelect(protocols: string[] | undefined, ports: (number | string)[] | undefined): string[] {
  if (!ports) return protocols ? protocols.map((p) => `-p ${p} `) : [""];
  return (protocols ?? ["tcp", "udp"]).flatMap((p) =>
    portChunks(ports).map((list) => `-p ${p} -m multiport --dports ${list} `),
  );
}

function planLink(link: Link, position: number): PlannedLink {
  const address = link.address?.split("/")[0];
  return {
    index: position + 1,
    name: link.name,
    interface: link.interface,
    fwmark: `${hex(link.mark << 8)}/${hex(MARK_MASK)}`,
    markChain: `MWAN-MARK-${position + 1}`,
    table: link.table,
    tableName: `mwan_${link.name}`,
    route: `default ${link.gateway ? `via ${link.gateway} ` : ""}dev ${link.interface} table ${link.table}`,
    markValue: link.mark << 8,
    markByte: link.mark,
    ...(address ? { fromPriority: PRIORITY.from + position } : {}),
    fwmarkPriority: PRIORITY.fwmark + position,
    targets: link.check.targets.join(" "),
    reliability: link.check.reliability,
    address,
    natTarget: address ? `SNAT --to-source ${address}` : "MASQUERADE",
  };
}

export function planGateway(gw: Gateway): Plan {
  const links = gw.links.map((l, i) => planLink(l, i));
  const weights = gw.links.map((l) => l.weight);
  const { balance } = gw;
  const variants = planVariants(links, weights, balance.lastResort);

  // Matches in iptables-save's own order (-s, -o, then -m), so the saved chain reads as rendered.
  const nat = links.flatMap((l) => [
    ...gw.lan.networks.map((net) => ({ match: `-s ${net} -o ${l.interface}`, target: l.natTarget })),
    // Gateway-originated traffic re-routed by its mark still carries the first route's source.
    ...(balance.local ? [{ match: `-o ${l.interface} -m addrtype --src-type LOCAL`, target: l.natTarget }] : []),
  ]);

  const ipRules = [
    // Main-table routes more specific than a default (LAN, connected, static) win over every
    // link table, so replies to the LAN never leave through a WAN.
    `rule add pref ${PRIORITY.suppressMain} lookup main suppress_prefixlength 0`,
    ...links.flatMap((l) => (l.fromPriority ? [`rule add pref ${l.fromPriority} from ${l.address} lookup ${l.table}`] : [])),
    ...links.map((l) => `rule add pref ${l.fwmarkPriority} fwmark ${l.fwmark} lookup ${l.table}`),
  ];
  const ipRoutes = links.map((l) => `route replace ${l.route}`);
  const ipUndo = [
    ...ipRules.map((r) => r.replace(/^rule add/, "rule del")),
    ...links.map((l) => `route flush table ${l.table}`),
  ];

  return {
    gateway: gw.name,
    root: gw.root,
    installDir: under(gw.root, LAYOUT.installDir),
    layout: LAYOUT,
    units: UNITS,
    resultTag: RESULT_TAG,
    mask: hex(MARK_MASK),
    hooks: { all: HOOKS, mangle: HOOKS.filter((h) => h.table === "mangle"), nat: HOOKS.filter((h) => h.table === "nat") },
    links,
    lanInterfaces: gw.lan.interfaces,
    lanNetworks: gw.lan.networks,
    bypass: [...gw.lan.networks, ...balance.exclude],
    select: planSelect(balance.protocols, balance.ports),
    inbound: balance.inboundSticky ? links : [],
    local: balance.local,
    pinnedSources: balance.local
      ? links.flatMap((l) => (l.address ? [{ address: l.address, fwmark: l.fwmark }] : []))
      : [],
    nat,
    priorities: { owned: OWNED_PRIORITIES, suppressMain: PRIORITY.suppressMain },
    ipRules,
    ipRoutes,
    ipUndo,
    health: { ...gw.health, markMask: MARK_MASK },
    sysctls: [
      { key: "net.ipv4.ip_forward", value: "1" },
      // rp_filter checks a reply against the tables *with* its mark only when this is set;
      // without it a strict rp_filter drops every reply that arrives on a non-default link.
      { key: "net.ipv4.conf.all.src_valid_mark", value: "1" },
    ],
    balanceChain: BALANCE_CHAIN,
    balanceChains: variants[0].chains.map((c) => c.name),
    balance: variants[variants.length - 2],
    variants,
  };
}
