// The lab's address and interface plan, as data. Pure: lab.ts turns it into `ip`, sysctl and
// iptables-restore input. Only documentation/benchmark ranges are used (RFC 5737, RFC 2544), and
// every namespace is private to one lab, so two labs may reuse the same addresses.

export const MAX_LINKS = 4;

/** 192.0.2.0/24 lives in the `net` namespace, on its loopback. */
export const SERVER_ADDRESSES = {
  primary: "192.0.2.10",
  /** A second server, e.g. for `balance.exclude` tests. */
  secondary: "192.0.2.20",
  /** Answers ping only: a health-probe target. */
  probe: "192.0.2.1",
} as const;

/** 2001:db8:5e::/64 lives in the `net` namespace too, on its loopback (IPv6 labs only). */
export const SERVER_ADDRESSES6 = {
  primary: "2001:db8:5e::10",
  secondary: "2001:db8:5e::20",
  /** Answers ping only: a health-probe target. */
  probe: "2001:db8:5e::1",
} as const;

export const DEFAULT_TCP_PORTS: readonly number[] = [22, 25, 80, 443, 8080, 5001];
export const DEFAULT_UDP_PORTS: readonly number[] = [5001];

export type LinkName = `isp${number}`;

export interface LinkInfo {
  /** "isp1".."isp4": also the key of the ISP router's namespace in `lab.ns`. */
  name: LinkName;
  /** The gateway's interface on this link: "wan1".."wan4". */
  interface: string;
  /** The gateway's address on the link: the only source the ISP lets through (BCP38). */
  address: string;
  /** The ISP router's address on the link (next hop). */
  gateway: string;
  prefixLength: number;
  /** CIDR of the link, e.g. "203.0.113.0/30". */
  subnet: string;
  // IPv6 labs only (LabOptions.ipv6); an IPv4 lab's links have none of these fields.
  /** The gateway's IPv6 address on the link (what the server sees with masquerade). */
  address6?: string;
  /** The ISP router's global IPv6 address on the link (next hop). */
  gateway6?: string;
  /** The ISP router's link-local address on the link: a fe80:: next hop. */
  gateway6LinkLocal?: string;
  prefixLength6?: number;
  /** CIDR of the link's IPv6 network. The ISP forwards sources from it or from prefix6 only (BCP38). */
  subnet6?: string;
  /** The prefix delegated to the customer (a /64), routed by the ISP to address6. */
  prefix6?: string;
}

/** A LAN network numbered from a link's delegated prefix (nat6 "none"): LabOptions.ipv6.lanFrom. */
export interface ProviderLan6 {
  link: LinkName;
  /** The link's prefix6. */
  network: string;
  gatewayAddress: string;
  clientAddress: string;
}

export interface LanInfo {
  interface: "lan0";
  network: string;
  gatewayAddress: string;
  clientAddress: string;
  /** Further client addresses (.3-.9), usable as connection sources. */
  extraClientAddresses: string[];
  // IPv6 labs only.
  /** The LAN's own IPv6 network, e.g. 2001:db8:10:1::/64 (what npt and masquerade translate). */
  network6?: string;
  gatewayAddress6?: string;
  /** ::10 of network6. */
  clientAddress6?: string;
  /** ::11-::17 of network6. */
  extraClientAddresses6?: string[];
  /** Further LAN networks, each a link's delegated prefix (nat6 "none"); the client is ::10 in each. */
  provider6?: ProviderLan6[];
}

export interface UpstreamInfo {
  /** ISP router side of the ISP-to-internet link. */
  ispAddress: string;
  /** `net` side. */
  netAddress: string;
  /** Interface name in the `net` namespace (the ISP side is always "up0"). */
  netInterface: string;
  /** IPv6 labs only: both sides of the ISP-to-internet link (a /64). */
  ispAddress6?: string;
  netAddress6?: string;
}

// Mixed ranges, prefix lengths and host numbers (the ISP is not always .1) so that product code
// cannot get away with assumptions about a link's shape.
const LINK_SHAPES: ReadonlyArray<Pick<LinkInfo, "subnet" | "prefixLength" | "gateway" | "address">> = [
  { subnet: "203.0.113.0/30", prefixLength: 30, gateway: "203.0.113.1", address: "203.0.113.2" },
  { subnet: "198.51.100.0/29", prefixLength: 29, gateway: "198.51.100.1", address: "198.51.100.6" },
  { subnet: "203.0.113.8/29", prefixLength: 29, gateway: "203.0.113.14", address: "203.0.113.9" },
  { subnet: "198.51.100.16/30", prefixLength: 30, gateway: "198.51.100.17", address: "198.51.100.18" },
];

// IPv6 shapes, mixed as well: link networks of /64, /126 and /112, the ISP's host number not
// always ::1, the gateway's not always below it. Delegated prefixes are /64s whose one's-complement
// sums differ from the LAN's, so an RFC 6296 (checksum-neutral) translation rewrites a word of the
// interface identifier and cannot pass for a same-host-part one.
const LINK_SHAPES6: ReadonlyArray<Required<Pick<LinkInfo, "subnet6" | "prefixLength6" | "gateway6" | "address6" | "prefix6" | "gateway6LinkLocal">>> = [
  { subnet6: "2001:db8:ff01:1::/64", prefixLength6: 64, gateway6: "2001:db8:ff01:1::1", address6: "2001:db8:ff01:1::a", prefix6: "2001:db8:a1:1::/64", gateway6LinkLocal: "fe80::1:1" },
  { subnet6: "2001:db8:ff02:2::/126", prefixLength6: 126, gateway6: "2001:db8:ff02:2::2", address6: "2001:db8:ff02:2::1", prefix6: "2001:db8:b2:2::/64", gateway6LinkLocal: "fe80::2:fe" },
  { subnet6: "2001:db8:ff03:3::3:0/112", prefixLength6: 112, gateway6: "2001:db8:ff03:3::3:fe", address6: "2001:db8:ff03:3::3:7", prefix6: "2001:db8:c3:3::/64", gateway6LinkLocal: "fe80::c3" },
  { subnet6: "2001:db8:ff04:4::/64", prefixLength6: 64, gateway6: "2001:db8:ff04:4::ffff", address6: "2001:db8:ff04:4:0:1:0:4", prefix6: "2001:db8:d4:4::/64", gateway6LinkLocal: "fe80::4:4:1" },
];

/** Interface names inside the ISP namespaces: towards the customer (gateway) and upstream. */
export const ISP_CUSTOMER_IF = "cpe0";
export const ISP_UPSTREAM_IF = "up0";
/** The client's interface in the `lan` namespace. */
export const CLIENT_IF = "eth0";

export interface Topology {
  prefix: string;
  ns: { gw: string; lan: string; net: string; isp: string[] };
  links: LinkInfo[];
  upstreams: UpstreamInfo[];
  lan: LanInfo;
  /** Dual stack (planTopology's ipv6 given). */
  ipv6: boolean;
}

export interface Ipv6Plan {
  /** Links whose delegated prefix also numbers the LAN (nat6 "none"). Default none. */
  lanFrom?: readonly string[];
}

const PREFIX_RE = /^mw[tl]-[a-z0-9][a-z0-9-]{0,15}$/;

export function planTopology(prefix: string, linkCount: number, lanIndex: number, ipv6?: Ipv6Plan): Topology {
  if (!PREFIX_RE.test(prefix)) throw new Error(`lab prefix must match ${PREFIX_RE}, got ${JSON.stringify(prefix)}`);
  if (!Number.isInteger(linkCount) || linkCount < 1 || linkCount > MAX_LINKS) {
    throw new Error(`lab links must be 1..${MAX_LINKS}, got ${linkCount}`);
  }
  if (!Number.isInteger(lanIndex) || lanIndex < 0 || lanIndex > 255) {
    throw new Error(`lab lanIndex must be 0..255, got ${lanIndex}`);
  }
  const ids = Array.from({ length: linkCount }, (_, i) => i + 1);
  const lanBase = `198.18.${lanIndex}`;
  const lanFrom = ipv6?.lanFrom ?? [];
  for (const name of lanFrom) {
    if (!ids.some((i) => name === `isp${i}`)) throw new Error(`ipv6.lanFrom: no link ${name} in a lab of ${linkCount}`);
  }
  const t: Topology = {
    prefix,
    ns: {
      gw: `${prefix}-gw`,
      lan: `${prefix}-lan`,
      net: `${prefix}-net`,
      isp: ids.map((i) => `${prefix}-isp${i}`),
    },
    links: ids.map((i) => ({ name: `isp${i}` as const, interface: `wan${i}`, ...LINK_SHAPES[i - 1] })),
    // 198.19.0.0/16 (second half of the benchmark range) joins each ISP router to the internet.
    upstreams: ids.map((i) => ({ ispAddress: `198.19.${i}.1`, netAddress: `198.19.${i}.2`, netInterface: `isp${i}` })),
    lan: {
      interface: "lan0",
      network: `${lanBase}.0/24`,
      gatewayAddress: `${lanBase}.1`,
      clientAddress: `${lanBase}.2`,
      extraClientAddresses: [3, 4, 5, 6, 7, 8, 9].map((h) => `${lanBase}.${h}`),
    },
    ipv6: false,
  };
  if (!ipv6) return t;
  // 2001:db8:10:<lanIndex>::/64 is the LAN's own; 2001:db8:ee:<i>::/64 joins ISP i to the internet.
  const lan6 = `2001:db8:10:${lanIndex.toString(16)}`;
  return {
    ...t,
    ipv6: true,
    links: t.links.map((l, i) => ({ ...l, ...LINK_SHAPES6[i] })),
    upstreams: t.upstreams.map((u, i) => ({ ...u, ispAddress6: `2001:db8:ee:${i + 1}::1`, netAddress6: `2001:db8:ee:${i + 1}::2` })),
    lan: {
      ...t.lan,
      network6: `${lan6}::/64`,
      gatewayAddress6: `${lan6}::1`,
      clientAddress6: `${lan6}::10`,
      extraClientAddresses6: [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17].map((h) => `${lan6}::${h.toString(16)}`),
      provider6: lanFrom.map((name) => {
        const prefix6 = LINK_SHAPES6[Number(name.slice(3)) - 1].prefix6;
        return { link: name as LinkName, network: prefix6, gatewayAddress: hostIn6(prefix6, 1n), clientAddress: hostIn6(prefix6, 0x10n) };
      }),
    },
  };
}

// --- IPv6 arithmetic (pure, for plans and for attributing what the server saw) ---

/** An IPv6 address as a 128-bit number; throws on anything else. */
export function parse6(address: string): bigint {
  const parts = address.split("::");
  if (parts.length > 2 || !/^[0-9a-f:]+$/i.test(address)) throw new Error(`not an IPv6 address: ${address}`);
  const words = (s: string) => (s ? s.split(":") : []);
  const head = words(parts[0]);
  const tail = parts.length === 2 ? words(parts[1]) : [];
  const fill = 8 - head.length - tail.length;
  if ((parts.length === 2 ? fill < 1 : fill !== 0) || [...head, ...tail].some((w) => !/^[0-9a-f]{1,4}$/i.test(w))) {
    throw new Error(`not an IPv6 address: ${address}`);
  }
  return [...head, ...Array(fill).fill("0"), ...tail].reduce((n, w) => (n << 16n) | BigInt(parseInt(w, 16)), 0n);
}

/** RFC 5952 text of a 128-bit number (lower case, the longest run of two or more zero words as ::). */
export function format6(n: bigint): string {
  const w = Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(":");
  return best.at < 0 ? hex(w) : `${hex(w.slice(0, best.at))}::${hex(w.slice(best.at + best.len))}`;
}

function cidr6(cidr: string): { base: bigint; len: number } {
  const [a, l] = cidr.split("/");
  const len = Number(l);
  if (!Number.isInteger(len) || len < 0 || len > 128) throw new Error(`not an IPv6 CIDR: ${cidr}`);
  return { base: parse6(a), len };
}

const hostMask6 = (len: number) => (1n << BigInt(128 - len)) - 1n;

/** `address` lies inside `cidr` (false for IPv4 or malformed addresses). */
export function inPrefix6(address: string, cidr: string): boolean {
  if (!address.includes(":")) return false;
  const { base, len } = cidr6(cidr);
  try {
    return (parse6(address) & ~hostMask6(len)) === (base & ~hostMask6(len));
  } catch {
    return false;
  }
}

/** Host number `host` of `cidr`, e.g. hostIn6("2001:db8:a1:1::/64", 0x10n) = "2001:db8:a1:1::10". */
export function hostIn6(cidr: string, host: bigint): string {
  const { base, len } = cidr6(cidr);
  return format6((base & ~hostMask6(len)) | (host & hostMask6(len)));
}

/** `address` (inside `from`) with its prefix swapped for `to`'s: a 1:1, same-host-part mapping. */
export function mapPrefix6(address: string, from: string, to: string): string {
  if (!inPrefix6(address, from)) throw new Error(`${address} is not inside ${from}`);
  const { len } = cidr6(from);
  if (cidr6(to).len !== len) throw new Error(`${from} and ${to} differ in length`);
  return hostIn6(to, parse6(address));
}

/** Veth pairs as `ip link add` lines (run from the root namespace: both ends are created in place). */
export function vethLines(t: Topology): string[] {
  const lines = [`link add ${CLIENT_IF} netns ${t.ns.lan} type veth peer name ${t.lan.interface} netns ${t.ns.gw}`];
  t.links.forEach((link, i) => {
    lines.push(`link add ${link.interface} netns ${t.ns.gw} type veth peer name ${ISP_CUSTOMER_IF} netns ${t.ns.isp[i]}`);
    const up = t.upstreams[i];
    lines.push(`link add ${ISP_UPSTREAM_IF} netns ${t.ns.isp[i]} type veth peer name ${up.netInterface} netns ${t.ns.net}`);
  });
  return lines;
}

const IPV6_OFF = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"];

/**
 * IPv6 on, without duplicate address detection (it would hold every address, link-local ones
 * included, tentative for about 1.7 s); `forwarding` as the namespace's IPv4 forwarding.
 */
const ipv6On = (forwarding: 0 | 1) => [
  "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0",
  "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
  `net.ipv6.conf.all.forwarding=${forwarding}`,
];

/**
 * Sysctls per namespace, set before the interfaces exist so that `default.*` reaches them too.
 * IPv6 is off everywhere unless the lab is dual-stack: link-local chatter would only add noise.
 */
export function earlySysctls(t: Topology): Map<string, string[]> {
  const m = new Map<string, string[]>();
  const v6 = (forwarding: 0 | 1) => (t.ipv6 ? ipv6On(forwarding) : IPV6_OFF);
  // The gateway starts as strict as the bundle must cope with: no forwarding, strict rp_filter,
  // src_valid_mark left at its default (0).
  m.set(t.ns.gw, ["net.ipv4.ip_forward=0", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1", ...v6(0)]);
  m.set(t.ns.lan, ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", ...v6(0)]);
  m.set(t.ns.net, ["net.ipv4.ip_forward=0", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", ...v6(0)]);
  for (const ns of t.ns.isp) {
    m.set(ns, ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", ...v6(1)]);
  }
  return m;
}

/** Sysctls that name interfaces, so can only be set once they exist. */
export function lateSysctls(t: Topology): Map<string, string[]> {
  const gwIfs = ["lo", t.lan.interface, ...t.links.map((l) => l.interface)];
  return new Map([[t.ns.gw, gwIfs.map((i) => `net.ipv4.conf.${i}.rp_filter=1`)]]);
}

/** `ip -batch` input per namespace: addresses, links up, routes (IPv6 addresses too; their routes: ip6Routes). */
export function ipBatches(t: Topology): Map<string, string[]> {
  const m = new Map<string, string[]>();
  const lanPrefix = t.lan.network.split("/")[1];
  const v6 = (lines: () => string[]) => (t.ipv6 ? lines() : []);
  const lan6 = t.lan;
  const addr6 = (cidr: string, dev: string) => `addr add ${cidr} dev ${dev} nodad`;

  m.set(t.ns.lan, [
    "link set lo up",
    `addr add ${t.lan.clientAddress}/${lanPrefix} dev ${CLIENT_IF}`,
    ...t.lan.extraClientAddresses.map((a) => `addr add ${a}/${lanPrefix} dev ${CLIENT_IF}`),
    // Linux prefers the newest of equally good IPv6 sources: clientAddress6 goes last, so that it is
    // the default source as clientAddress (the primary) is for IPv4.
    ...v6(() => lan6.provider6!.map((p) => addr6(`${p.clientAddress}/${p.network.split("/")[1]}`, CLIENT_IF))),
    ...v6(() => [...lan6.extraClientAddresses6!, lan6.clientAddress6!].map((a) => addr6(`${a}/64`, CLIENT_IF))),
    `link set ${CLIENT_IF} up`,
    `route add default via ${t.lan.gatewayAddress}`,
  ]);

  // Like a typical router before multiwan: connected routes plus one default via link 1.
  m.set(t.ns.gw, [
    "link set lo up",
    `addr add ${t.lan.gatewayAddress}/${lanPrefix} dev ${t.lan.interface}`,
    ...v6(() => [addr6(`${lan6.gatewayAddress6}/64`, t.lan.interface)]),
    ...v6(() => lan6.provider6!.map((p) => addr6(`${p.gatewayAddress}/${p.network.split("/")[1]}`, t.lan.interface))),
    `link set ${t.lan.interface} up`,
    ...t.links.flatMap((l) => [
      `addr add ${l.address}/${l.prefixLength} dev ${l.interface}`,
      ...v6(() => [addr6(`${l.address6}/${l.prefixLength6}`, l.interface)]),
      `link set ${l.interface} up`,
    ]),
    `route add default via ${t.links[0].gateway} dev ${t.links[0].interface}`,
  ]);

  t.links.forEach((l, i) => {
    const up = t.upstreams[i];
    m.set(t.ns.isp[i], [
      "link set lo up",
      `addr add ${l.gateway}/${l.prefixLength} dev ${ISP_CUSTOMER_IF}`,
      ...v6(() => [addr6(`${l.gateway6}/${l.prefixLength6}`, ISP_CUSTOMER_IF), addr6(`${l.gateway6LinkLocal}/64`, ISP_CUSTOMER_IF)]),
      `link set ${ISP_CUSTOMER_IF} up`,
      `addr add ${up.ispAddress}/30 dev ${ISP_UPSTREAM_IF}`,
      ...v6(() => [addr6(`${up.ispAddress6}/64`, ISP_UPSTREAM_IF)]),
      `link set ${ISP_UPSTREAM_IF} up`,
      `route add default via ${up.netAddress} dev ${ISP_UPSTREAM_IF}`,
    ]);
  });

  // The internet knows each link's subnet through that link's ISP only, and nothing of the LAN.
  m.set(t.ns.net, [
    "link set lo up",
    ...Object.values(SERVER_ADDRESSES).map((a) => `addr add ${a}/32 dev lo`),
    ...v6(() => Object.values(SERVER_ADDRESSES6).map((a) => `addr add ${a}/128 dev lo`)),
    ...t.links.flatMap((l, i) => {
      const up = t.upstreams[i];
      return [
        `addr add ${up.netAddress}/30 dev ${up.netInterface}`,
        ...v6(() => [addr6(`${up.netAddress6}/64`, up.netInterface)]),
        `link set ${up.netInterface} up`,
        `route add ${l.subnet} via ${up.ispAddress} dev ${up.netInterface}`,
      ];
    }),
  ]);
  return m;
}

/**
 * IPv6 routes per namespace (dual-stack labs; empty otherwise), for once every link is up: an IPv6
 * next hop must be on a connected route, which only exists on a link whose peer is up. The
 * gateway's main table mirrors IPv4's: one default via link 1. Each ISP routes its delegated
 * prefix to the gateway; the internet knows link networks and delegated prefixes through their ISP
 * only, and nothing of the LAN's own network.
 */
export function ip6Routes(t: Topology): Map<string, string[]> {
  const m = new Map<string, string[]>();
  if (!t.ipv6) return m;
  m.set(t.ns.lan, [`route add ::/0 via ${t.lan.gatewayAddress6} dev ${CLIENT_IF}`]);
  m.set(t.ns.gw, [`route add ::/0 via ${t.links[0].gateway6} dev ${t.links[0].interface}`]);
  t.links.forEach((l, i) => {
    const up = t.upstreams[i];
    m.set(t.ns.isp[i], [
      `route add ::/0 via ${up.netAddress6} dev ${ISP_UPSTREAM_IF}`,
      `route add ${l.prefix6} via ${l.address6} dev ${ISP_CUSTOMER_IF}`,
    ]);
  });
  m.set(t.ns.net, t.links.flatMap((l, i) => {
    const up = t.upstreams[i];
    return [`route add ${l.subnet6} via ${up.ispAddress6} dev ${up.netInterface}`, `route add ${l.prefix6} via ${up.ispAddress6} dev ${up.netInterface}`];
  }));
  return m;
}

/** The FORWARD rule that breakUplink inserts first in an ISP router (and restoreUplink deletes). */
export const BROKEN_RULE = ["-m", "comment", "--comment", "mwt-broken-uplink", "-j", "DROP"];

/** iptables-restore input for an ISP router: BCP38 on the customer side, no NAT. */
export function ispRules(link: LinkInfo): string {
  return [
    "*filter",
    ":INPUT ACCEPT [0:0]",
    ":FORWARD ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    `-A FORWARD -i ${ISP_CUSTOMER_IF} ! -s ${link.address}/32 -j DROP`,
    "COMMIT",
    "",
  ].join("\n");
}

/** The ip6tables chain of an ISP router that drops what its customer sends from a foreign source. */
export const BCP38_CHAIN6 = "mwt-bcp38";

/**
 * ip6tables-restore input for an ISP router of a dual-stack lab: BCP38 on the customer side (only
 * sources from the link network or the delegated prefix go through), no NAT.
 */
export function ispRules6(link: LinkInfo): string {
  return [
    "*filter",
    ":INPUT ACCEPT [0:0]",
    ":FORWARD ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    `:${BCP38_CHAIN6} - [0:0]`,
    `-A FORWARD -i ${ISP_CUSTOMER_IF} -j ${BCP38_CHAIN6}`,
    `-A ${BCP38_CHAIN6} -s ${link.subnet6} -j RETURN`,
    `-A ${BCP38_CHAIN6} -s ${link.prefix6} -j RETURN`,
    `-A ${BCP38_CHAIN6} -j DROP`,
    "COMMIT",
    "",
  ].join("\n");
}

/** Mark of the late echo replies lab/echo-delay.py sends: the echo replies delayedEchoRule lets out. */
export const DELAYED_ECHO_MARK = 0x6d77;

/** The OUTPUT rule of the `net` namespace that drops the kernel's own (prompt) echo replies out of `netInterface`. */
export function delayedEchoRule(netInterface: string): string[] {
  return ["-o", netInterface, "-p", "icmp", "--icmp-type", "echo-reply", "-m", "mark", "!", "--mark", String(DELAYED_ECHO_MARK),
    "-m", "comment", "--comment", "mwt-delayed-echo", "-j", "DROP"];
}

/** The FORWARD rule of an ISP router that drops `percent` % of the echo requests its customer sends, at random. */
export function echoLossRule(percent: number): string[] {
  return ["-i", ISP_CUSTOMER_IF, "-p", "icmp", "--icmp-type", "echo-request", "-m", "statistic", "--mode", "random",
    "--probability", (percent / 100).toFixed(4), "-m", "comment", "--comment", "mwt-echo-loss", "-j", "DROP"];
}
