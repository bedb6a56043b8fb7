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
}

export interface LanInfo {
  interface: "lan0";
  network: string;
  gatewayAddress: string;
  clientAddress: string;
  /** Further client addresses (.3-.9), usable as connection sources. */
  extraClientAddresses: string[];
}

export interface UpstreamInfo {
  /** ISP router side of the ISP-to-internet link. */
  ispAddress: string;
  /** `net` side. */
  netAddress: string;
  /** Interface name in the `net` namespace (the ISP side is always "up0"). */
  netInterface: string;
}

// Mixed ranges, prefix lengths and host numbers (the ISP is not always .1) so that product code
// cannot get away with assumptions about a link's shape.
const LINK_SHAPES: ReadonlyArray<Pick<LinkInfo, "subnet" | "prefixLength" | "gateway" | "address">> = [
  { subnet: "203.0.113.0/30", prefixLength: 30, gateway: "203.0.113.1", address: "203.0.113.2" },
  { subnet: "198.51.100.0/29", prefixLength: 29, gateway: "198.51.100.1", address: "198.51.100.6" },
  { subnet: "203.0.113.8/29", prefixLength: 29, gateway: "203.0.113.14", address: "203.0.113.9" },
  { subnet: "198.51.100.16/30", prefixLength: 30, gateway: "198.51.100.17", address: "198.51.100.18" },
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
}

const PREFIX_RE = /^mw[tl]-[a-z0-9][a-z0-9-]{0,15}$/;

export function planTopology(prefix: string, linkCount: number, lanIndex: number): Topology {
  if (!PREFIX_RE.test(prefix)) throw new Error(`lab prefix must match ${PREFIX_RE}, got ${JSON.stringify(prefix)}`);
  if (!Number.isInteger(linkCount) || linkCount < 1 || linkCount > MAX_LINKS) {
    throw new Error(`lab links must be 1..${MAX_LINKS}, got ${linkCount}`);
  }
  if (!Number.isInteger(lanIndex) || lanIndex < 0 || lanIndex > 255) {
    throw new Error(`lab lanIndex must be 0..255, got ${lanIndex}`);
  }
  const ids = Array.from({ length: linkCount }, (_, i) => i + 1);
  const lanBase = `198.18.${lanIndex}`;
  return {
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
  };
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
 * Sysctls per namespace, set before the interfaces exist so that `default.*` reaches them too.
 * IPv6 is off everywhere: the product is IPv4-only and link-local chatter would only add noise.
 */
export function earlySysctls(t: Topology): Map<string, string[]> {
  const m = new Map<string, string[]>();
  // The gateway starts as strict as the bundle must cope with: no forwarding, strict rp_filter,
  // src_valid_mark left at its default (0).
  m.set(t.ns.gw, ["net.ipv4.ip_forward=0", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1", ...IPV6_OFF]);
  m.set(t.ns.lan, ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", ...IPV6_OFF]);
  m.set(t.ns.net, ["net.ipv4.ip_forward=0", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", ...IPV6_OFF]);
  for (const ns of t.ns.isp) {
    m.set(ns, ["net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", ...IPV6_OFF]);
  }
  return m;
}

/** Sysctls that name interfaces, so can only be set once they exist. */
export function lateSysctls(t: Topology): Map<string, string[]> {
  const gwIfs = ["lo", t.lan.interface, ...t.links.map((l) => l.interface)];
  return new Map([[t.ns.gw, gwIfs.map((i) => `net.ipv4.conf.${i}.rp_filter=1`)]]);
}

/** `ip -batch` input per namespace: addresses, links up, routes. */
export function ipBatches(t: Topology): Map<string, string[]> {
  const m = new Map<string, string[]>();
  const lanPrefix = t.lan.network.split("/")[1];

  m.set(t.ns.lan, [
    "link set lo up",
    `addr add ${t.lan.clientAddress}/${lanPrefix} dev ${CLIENT_IF}`,
    ...t.lan.extraClientAddresses.map((a) => `addr add ${a}/${lanPrefix} dev ${CLIENT_IF}`),
    `link set ${CLIENT_IF} up`,
    `route add default via ${t.lan.gatewayAddress}`,
  ]);

  // Like a typical router before multiwan: connected routes plus one default via link 1.
  m.set(t.ns.gw, [
    "link set lo up",
    `addr add ${t.lan.gatewayAddress}/${lanPrefix} dev ${t.lan.interface}`,
    `link set ${t.lan.interface} up`,
    ...t.links.flatMap((l) => [`addr add ${l.address}/${l.prefixLength} dev ${l.interface}`, `link set ${l.interface} up`]),
    `route add default via ${t.links[0].gateway} dev ${t.links[0].interface}`,
  ]);

  t.links.forEach((l, i) => {
    const up = t.upstreams[i];
    m.set(t.ns.isp[i], [
      "link set lo up",
      `addr add ${l.gateway}/${l.prefixLength} dev ${ISP_CUSTOMER_IF}`,
      `link set ${ISP_CUSTOMER_IF} up`,
      `addr add ${up.ispAddress}/30 dev ${ISP_UPSTREAM_IF}`,
      `link set ${ISP_UPSTREAM_IF} up`,
      `route add default via ${up.netAddress} dev ${ISP_UPSTREAM_IF}`,
    ]);
  });

  // The internet knows each link's subnet through that link's ISP only, and nothing of the LAN.
  m.set(t.ns.net, [
    "link set lo up",
    ...Object.values(SERVER_ADDRESSES).map((a) => `addr add ${a}/32 dev lo`),
    ...t.links.flatMap((l, i) => {
      const up = t.upstreams[i];
      return [
        `addr add ${up.netAddress}/30 dev ${up.netInterface}`,
        `link set ${up.netInterface} up`,
        `route add ${l.subnet} via ${up.ispAddress} dev ${up.netInterface}`,
      ];
    }),
  ]);
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
