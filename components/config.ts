// The site configuration: one zod schema for stack config (`multiwan:site`) and CLI YAML files.
// Every value that reaches a rule or a shell line is whitelisted here, so nothing from config can
// become an extra shell word or iptables option.
import { z } from "zod";
import { parseCidr, parseIpv4, inSubnet, formatIpv4, type Subnet } from "./ipv4";
import { inSubnet6, overlaps6, parseCidr6, parseIpv6, type Subnet6 } from "./ipv6";
import { noDotDot, ROOT_MAX_LENGTH, ROOT_PATTERN } from "./root-path";
import { splitRuleCount } from "./split";
import { stickyRuleCount } from "./sticky";
import { carrying, carryingWeights } from "./tiers";
import { TAR_NAME_MAX } from "./tar";
import { FAMILIES } from "./families";
import { HOST_KEY_LINE, hostKeyProblem } from "./host-key";

/** Bad config: every problem at once, each with its field path. */
export class ConfigError extends Error {
  constructor(public readonly problems: { path: string; message: string }[]) {
    super(
      `invalid multiwan config (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n` +
        problems.map((p) => `  ${p.path || "(root)"}: ${p.message}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

/** `gateways[0].links[1].weight` from zod's path array. */
export function formatPath(path: readonly PropertyKey[]): string {
  return path
    .map((k, i) => (typeof k === "number" ? `[${k}]` : i === 0 ? String(k) : `.${String(k)}`))
    .join("");
}

// Linux allows 15 bytes and no '/' or whitespace; we also refuse a leading '-' (an option to
// iptables/ip) and '+' (an iptables wildcard).
const interfaceName = z
  .string()
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/, "must be a Linux interface name: 1-15 of A-Z a-z 0-9 _ . - (not starting with - or .)")
  .refine((n) => n !== "lo", "must not be lo: the loopback interface is neither a LAN nor an uplink")
  .meta({ title: "interface name: 1–15 of A-Z a-z 0-9 _ . -, not starting with - or ., not lo" });

// Titles name a string's format in the configuration reference (components/config-reference.ts).
const name = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,30}$/, "must be 1-31 of a-z 0-9 _ - starting with a letter")
  .meta({ title: "1–31 of a-z 0-9 _ -, starting with a letter" });
const linkName = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,14}$/, "must be 1-15 of a-z 0-9 _ - starting with a letter")
  .meta({ title: "1–15 of a-z 0-9 _ -, starting with a letter" });

const DOTTED_QUAD = /^[0-9]{1,3}(\.[0-9]{1,3}){3}$/;

/** Ranges that hold no address a gateway can route to as a host. */
const SPECIAL_RANGES = [
  { subnet: parseCidr("0.0.0.0/8"), what: '"this network" (0.0.0.0/8), not a host' },
  { subnet: parseCidr("127.0.0.0/8"), what: "loopback (127.0.0.0/8)" },
  { subnet: parseCidr("224.0.0.0/4"), what: "multicast (224.0.0.0/4)" },
  { subnet: parseCidr("240.0.0.0/4"), what: "reserved (240.0.0.0/4)" },
];

/** Why a syntactically valid address is no unicast host address, or undefined when it is one. */
function nonUnicast(address: string): string | undefined {
  if (address === "0.0.0.0") return "the unspecified address";
  if (address === "255.255.255.255") return "the broadcast address";
  return SPECIAL_RANGES.find((r) => inSubnet(parseIpv4(address), r.subnet))?.what;
}

/** A refinement adding "must be a unicast host address" to an address (syntax is checked elsewhere). */
const unicast = (addressOf: (value: string) => string) => (value: string, ctx: z.RefinementCtx) => {
  const address = addressOf(value);
  const why = DOTTED_QUAD.test(address) ? nonUnicast(address) : undefined;
  if (why) ctx.addIssue({ code: "custom", message: `must be a unicast host address: ${address} is ${why}` });
};

const overlaps = (a: Subnet, b: Subnet) => a.network <= b.broadcast && b.network <= a.broadcast;

// A value of the other family names the field it belongs in (`gateway` ↔ `gateway6`).
const hasColon = (v: unknown) => typeof v === "string" && v.includes(":");
const hasDot = (v: unknown) => typeof v === "string" && /^[0-9.]+(\/[0-9]*)?$/.test(v);
const v4Error = (what: string, v6Field: string) => (iss: { input?: unknown }) =>
  hasColon(iss.input) ? `is IPv6: an IPv6 value goes in \`${v6Field}\`` : what;
const v6Error = (what: string, v4Field: string) => (iss: { input?: unknown }) =>
  hasDot(iss.input) ? `is IPv4: an IPv4 value goes in \`${v4Field}\`` : what;

const NETWORK_V4 = "must be an IPv4 network in CIDR form, e.g. 198.51.100.0/24";
const networkCidr = (v6Field: string) => z.cidrv4({ error: v4Error(NETWORK_V4, v6Field) }).refine(
  (c) => parseCidr(c).network === parseIpv4(c.split("/")[0]),
  { message: "has host bits set: write the network address (iptables would silently change it)" },
).meta({ title: "IPv4 network in CIDR form, no host bits set" });
// A LAN is the gateway's own network: never the whole internet, never a special range.
const lanNetwork = networkCidr("lan.networks6")
  .superRefine((c, ctx) => {
    if (!DOTTED_QUAD.test(c.split("/")[0])) return;
    const subnet = parseCidr(c);
    const message = subnet.prefix === 0
      ? "must not be 0.0.0.0/0: every destination would count as LAN, so nothing would be balanced"
      : SPECIAL_RANGES.filter((r) => overlaps(subnet, r.subnet)).map((r) => `must be a unicast network: it overlaps ${r.what}`)[0];
    if (message) ctx.addIssue({ code: "custom", message });
  })
  .meta({ title: "IPv4 network in CIDR form, no host bits set, not 0.0.0.0/0 or a special range" });
const ipv4 = (v6Field: string) => z.ipv4({ error: v4Error("must be an IPv4 address, e.g. 203.0.113.2", v6Field) })
  .superRefine(unicast((a) => a))
  .meta({ title: "unicast IPv4 address" });
// SNAT source: an address, optionally with the link's prefix length so the gateway can be checked.
const ADDRESS_V4 = "must be an IPv4 address, optionally with /prefix, e.g. 203.0.113.2/30";
const addressWithPrefix = z
  .string()
  .superRefine((s, ctx) => {
    if (!z.ipv4().safeParse(s.split("/")[0]).success || (s.includes("/") && !/^[0-9]{1,2}$/.test(s.split("/")[1])) || Number(s.split("/")[1] ?? 0) > 32)
      ctx.addIssue({ code: "custom", message: v4Error(ADDRESS_V4, "address6")({ input: s }) });
  })
  .superRefine(unicast((s) => s.split("/")[0]))
  .meta({ title: "unicast IPv4 address, optionally with /prefix" });

/** IPv6 ranges that hold no address a gateway can route to as a host. */
const SPECIAL_RANGES_6 = [
  { subnet: parseCidr6("::/128"), what: "the unspecified address (::)" },
  { subnet: parseCidr6("::1/128"), what: "loopback (::1)" },
  { subnet: parseCidr6("::ffff:0:0/96"), what: "IPv4-mapped (::ffff:0:0/96)" },
  { subnet: parseCidr6("fe80::/10"), what: "link-local (fe80::/10): not routed beyond its link" },
  { subnet: parseCidr6("ff00::/8"), what: "multicast (ff00::/8)" },
];
const special6 = (s: Subnet6, allowLinkLocal = false) =>
  SPECIAL_RANGES_6.find((r) => overlaps6(s, r.subnet) && !(allowLinkLocal && r.what.startsWith("link-local")))?.what;
const unicast6 = (allowLinkLocal: boolean) => (value: string, ctx: z.RefinementCtx) => {
  if (!z.ipv6().safeParse(value.split("/")[0]).success) return;
  const why = special6(parseCidr6(`${value.split("/")[0]}/128`), allowLinkLocal);
  if (why) ctx.addIssue({ code: "custom", message: `must be a unicast ${allowLinkLocal ? "" : "global "}address: ${value.split("/")[0]} is ${why}` });
};
const ipv6 = (v4Field: string, allowLinkLocal = false) => z.ipv6({ error: v6Error("must be an IPv6 address, e.g. 2001:db8::2", v4Field) })
  .superRefine(unicast6(allowLinkLocal))
  .meta({ title: allowLinkLocal ? "unicast IPv6 address (link-local fe80:: allowed)" : "global unicast IPv6 address" });
const network6 = (v4Field: string) => z.cidrv6({ error: v6Error("must be an IPv6 network in CIDR form, e.g. 2001:db8:10::/64", v4Field) }).refine(
  (c) => parseCidr6(c).network === parseIpv6(c.split("/")[0]),
  { message: "has host bits set: write the network address (ip6tables would silently change it)" },
).meta({ title: "IPv6 network in CIDR form, no host bits set" });
// The LAN's and a provider's prefixes: global unicast, never the whole internet.
const prefix6 = (v4Field: string) => network6(v4Field)
  .superRefine((c, ctx) => {
    if (!z.cidrv6().safeParse(c).success) return;
    const s = parseCidr6(c);
    const message = s.prefix === 0 ? "must not be ::/0: every destination would count as this network" : special6(s) && `must be a unicast network: it overlaps ${special6(s)}`;
    if (message) ctx.addIssue({ code: "custom", message });
  })
  .meta({ title: "IPv6 network in CIDR form, no host bits set, not ::/0 or a special range" });
const ADDRESS_V6 = "must be an IPv6 address, optionally with /prefix, e.g. 2001:db8:1::2/64";
const address6WithPrefix = z
  .string()
  .superRefine((s, ctx) => {
    const [addr, len] = s.split("/");
    if (!z.ipv6().safeParse(addr).success || (len !== undefined && (!/^[0-9]{1,3}$/.test(len) || Number(len) > 128)) || s.split("/").length > 2)
      ctx.addIssue({ code: "custom", message: v6Error(ADDRESS_V6, "address")({ input: s }) });
  })
  .superRefine(unicast6(false))
  .meta({ title: "global unicast IPv6 address, optionally with /prefix" });

const portError = "must be a port 1-65535 or a range like 8000-8100";
const port = z.union(
  [
    z.number().int().min(1).max(65535),
    z.string().regex(/^[0-9]{1,5}-[0-9]{1,5}$/, portError).refine((r) => {
      const [a, b] = r.split("-").map(Number);
      return a >= 1 && b <= 65535 && a < b;
    }, "range must be low-high within 1-65535"),
  ],
  { error: portError },
).meta({ title: "port 1–65535 or range low-high (8000-8100)" });

export const RESERVED_TABLES = [0, 253, 254, 255];
/** Ceiling on rules across all pre-rendered variants: 2^N-1 of them, each the split of its links' weights. */
export const MAX_VARIANT_RULES = 25_000;
/** The most links whose variants fit MAX_VARIANT_RULES at weight 1 (n links: n·2^(n-1) rules): 12. */
export const MAX_LINKS = (() => {
  let n = 2;
  const equal = (count: number) => Array.from({ length: count }, (_, i) => ({ name: `l${i}`, weight: 1, tier: 1 }));
  while (n < 32 && variantRules(equal(n + 1), []).total <= MAX_VARIANT_RULES) n++;
  return n;
})();
const LINK_COUNT = `needs 2 to ${MAX_LINKS} links (the failover variants of ${MAX_LINKS + 1} exceed the budget of ${MAX_VARIANT_RULES} rules)`;
// render.ts names each variant's file `variants/<key>.rules` (`.rules6` for IPv6), the key being the live links' names
// joined by `+`; the push carries files as ustar entries, whose names hold TAR_NAME_MAX bytes.
const VARIANT_FILE = (key: string, routes6: boolean) => `variants/${key}${routes6 ? FAMILIES[6].variantSuffix : FAMILIES[4].variantSuffix}`;
/** Characters the link names may have together, joined by `+`, so every variant file name fits (one less where IPv6 is routed). */
export const MAX_LINK_NAMES_LENGTH = TAR_NAME_MAX - VARIANT_FILE("", false).length;
const maxLinkNames = (routes6: boolean) => TAR_NAME_MAX - VARIANT_FILE("", routes6).length;

export const QUALITY_DEFAULTS = { window: 10, flushConntrack: false };
const qualitySchema = z.strictObject({
  latencyMs: z.number().int().min(1).max(60_000).optional()
    .describe("mean round trip of the window's answered probes above which the link is degraded"),
  lossPercent: z.number().min(0).max(100).optional()
    .describe("share of the window's probes unanswered above which the link is degraded"),
  recoverLatencyMs: z.number().int().min(1).max(60_000).optional()
    .describe("mean round trip at or below which a degraded link recovers; default 80 % of `latencyMs`"),
  recoverLossPercent: z.number().min(0).max(100).optional()
    .describe("loss at or below which a degraded link recovers; default half of `lossPercent`"),
  window: z.number().int().min(2).max(100).optional()
    .meta({ description: "probe rounds the figures are taken over (a sliding window)", default: QUALITY_DEFAULTS.window }),
  flushConntrack: z.boolean().optional()
    .meta({ description: "delete a degraded link's connections, as for a down link (otherwise they finish there)", default: QUALITY_DEFAULTS.flushConntrack }),
}).superRefine((q, ctx) => {
  if (q.latencyMs === undefined && q.lossPercent === undefined)
    ctx.addIssue({ code: "custom", message: "needs `latencyMs` or `lossPercent` (or both): the limits that degrade a link" });
  const pairs = [["recoverLatencyMs", "latencyMs"], ["recoverLossPercent", "lossPercent"]] as const;
  for (const [recover, limit] of pairs) {
    if (q[recover] !== undefined && q[limit] === undefined) ctx.addIssue({ code: "custom", path: [recover], message: `needs \`${limit}\`` });
    else if (q[recover] !== undefined && q[recover]! > q[limit]!) ctx.addIssue({ code: "custom", path: [recover], message: `must not exceed \`${limit}\` (${q[limit]}): a link would degrade and recover on the same figures` });
  }
}).describe("degrade a link whose probes answer slowly or with loss: it leaves the balancing like a down link until its figures recover");

export const PASSIVE_DEFAULTS = { connections: 3, replyMs: 250 };
const passiveSchema = z.union([
  z.boolean(),
  z.strictObject({
    connections: z.number().int().min(2).max(1000).optional()
      .meta({ description: "new TCP connections through one link, none of them answered, that make the daemon confirm the link at once", default: PASSIVE_DEFAULTS.connections }),
    replyMs: z.number().int().min(50).max(10_000).optional()
      .meta({ description: "milliseconds a new connection may wait for its first answer before it counts as unanswered (above the links' normal round trip)", default: PASSIVE_DEFAULTS.replyMs }),
  }),
], { error: "must be true, false or { connections?, replyMs? }" });

const weight = z.number().int().min(1).max(1000);
const tier = z.number().int().min(1).max(16);

const linkSchema = z.strictObject({
  name: linkName.describe("unique on the gateway; names the link's routing table (`mwan_<name>`) and balancing variants"),
  interface: interfaceName.describe("the uplink's interface (`eth1`, `ppp0`, …), unique on the gateway"),
  gateway: ipv4("gateway6").optional().describe("IPv4 next hop; omit for a device route (PPP)"),
  address: addressWithPrefix.optional().describe("IPv4 SNAT source; with `/prefix`, `gateway` is checked against that subnet; omit to MASQUERADE"),
  gateway6: ipv6("gateway", true).optional()
    .describe("IPv6 next hop (a router's link-local fe80:: address is usual); omit for a device route (PPP). On a gateway with `lan.networks6`, a link carries IPv6 when it has `gateway6`, `address6`, `prefix6` or `nat6`; the others carry IPv4 only"),
  address6: address6WithPrefix.optional()
    .describe("the gateway's IPv6 address on the link: the NAT66 source with `nat6: masquerade` (omitted: MASQUERADE), and a `from` rule into the link's table; with `/prefix`, a global `gateway6` is checked against that subnet"),
  prefix6: prefix6("address").optional()
    .describe("the IPv6 prefix the provider delegates (routes) to this link: what `nat6: npt` maps the LAN onto, or (`nat6: none`) the LAN network numbered from it"),
  nat6: z.enum(["npt", "masquerade", "none"]).optional()
    .meta({ description: "IPv6 translation on this link: `npt` maps the LAN's IPv6 network 1:1 onto `prefix6` (same length, same host part; stateful NETMAP, inbound to `prefix6` reaches the LAN host), `masquerade` (NAT66 to `address6` or the interface's address), `none` (`prefix6` is one of `lan.networks6`: its hosts' connections always use this link, untranslated; other LAN networks leaving here are masqueraded)", default: "masquerade" }),
  weight: weight.default(1).describe("the link's share of new connections is weight / sum of the weights of the live links of its tier"),
  tier: tier.default(1)
    .describe("new connections go to the live links of the lowest tier that has one (1: primary); a link of a higher tier carries nothing while a better tier lives"),
  failback: z.enum(["keep", "move"]).default("keep")
    .describe("when a better tier comes back: `keep` lets this link's connections finish where they are, `move` deletes them from conntrack at once (metered backups): a UDP flow's next packets and a client's retries go to the better tier, a TCP connection breaks and its application reconnects there"),
  mark: z.number().int().min(1).max(255).optional()
    .describe("value of the link's mark byte: fwmark `mark << 8` under mask `0xff00`; default: the lowest unused value from 1, in link order"),
  table: z
    .number()
    .int()
    .min(1)
    .max(2_147_483_647)
    .refine((t) => !RESERVED_TABLES.includes(t), "must not be 0, 253, 254 or 255 (reserved by the kernel)")
    .optional()
    .describe(`routing table id, not ${RESERVED_TABLES.join(", ")}; default: the lowest unused id from 101, in link order`),
  quality: qualitySchema.optional().describe("this link's own limits, instead of `health.quality`"),
  check: z.strictObject({
    targets: z.array(ipv4("targets6")).min(1, "needs at least one probe target").max(8).optional()
      .describe("IPv4 addresses pinged through this link every probe round (required when the gateway has `lan.networks`)"),
    targets6: z.array(ipv6("targets")).min(1, "needs at least one probe target").max(8).optional()
      .describe("IPv6 addresses pinged through this link every probe round (required when the gateway has `lan.networks6`)"),
    reliability: z.number().int().min(1).default(1)
      .describe("how many targets of each family the link probes (`targets`, `targets6`) must answer for a probe round to succeed: either family failing takes the link down"),
  }).describe("the link's health probes: only they see an upstream failure"),
});

export const BALANCE_DEFAULTS = {
  exclude: [] as string[],
  exclude6: [] as string[],
  local: false,
  inboundSticky: true,
  lastResort: "all" as const,
};
export const HEALTH_DEFAULTS = {
  interval: 0.5, timeout: 1, down: 3, up: 5, flushConntrack: true, hookTimeout: 10,
  metricsFile: "/var/lib/prometheus/node-exporter/multiwan.prom" as string | false,
  passive: true as Passive,
};

// Site and gateway sections are partial and merged over these defaults in resolveGateway, so the
// defaults are only recorded as metadata (for the configuration reference).
const protocol = z.enum(["tcp", "udp", "icmp", "sctp"]);
const balanceFields = {
  exclude: z.array(networkCidr("exclude6")).max(64)
    .meta({ description: "IPv4 destinations never balanced: they follow the main routing table", default: BALANCE_DEFAULTS.exclude }),
  exclude6: z.array(network6("exclude")).max(64)
    .meta({ description: "IPv6 destinations never balanced: they follow the main routing table", default: BALANCE_DEFAULTS.exclude6 }),
  protocols: z.array(protocol).min(1).describe("balance only these protocols; omitted: all"),
  ports: z.array(port).min(1).max(64)
    .describe("balance only these destination ports (tcp and udp unless `protocols` says otherwise); omitted: all"),
  local: z.boolean().meta({ description: "also balance connections the gateway itself opens; a socket bound to a link's address stays on that link (unless the main table routes through that link: then it is balanced like an unbound socket, which has that address too)", default: BALANCE_DEFAULTS.local }),
  inboundSticky: z.boolean()
    .meta({ description: "answer a connection that arrived on a link through that link", default: BALANCE_DEFAULTS.inboundSticky }),
  lastResort: z.enum(["all", "main"]).meta({
    description: "every link down (e.g. the probe targets are gone): keep balancing over all links, or leave new connections to the main table",
    default: BALANCE_DEFAULTS.lastResort,
  }),
};
const healthFields = {
  interval: z.number().min(0.1).max(60)
    .meta({ description: "seconds between probe rounds (each round's own work, a few milliseconds, comes on top)", default: HEALTH_DEFAULTS.interval }),
  timeout: z.number().min(0.1).max(30).meta({ description: "seconds a probe waits for its answer", default: HEALTH_DEFAULTS.timeout }),
  down: z.number().int().min(1).max(100)
    .meta({ description: "consecutive failed rounds that take a link down", default: HEALTH_DEFAULTS.down }),
  up: z.number().int().min(1).max(100)
    .meta({ description: "consecutive successful rounds that bring a down link back", default: HEALTH_DEFAULTS.up }),
  flushConntrack: z.boolean().meta({
    description: "when a link goes down, delete its conntrack entries (only those), so retries are balanced onto live links",
    default: HEALTH_DEFAULTS.flushConntrack,
  }),
  quality: qualitySchema.describe("latency and loss limits for every link (a link's own `quality` replaces them); off when omitted"),
  metricsFile: z.union([z.string().regex(/^(\/[A-Za-z0-9._-]+)+\.prom$/, "must be an absolute path of A-Z a-z 0-9 . _ - segments ending in .prom").refine(noDotDot, "must not contain '..'"), z.literal(false)])
    .meta({ description: "Prometheus text file the daemon rewrites after every round, under the gateway's root (node_exporter's textfile collector reads Debian's default); false: none", default: HEALTH_DEFAULTS.metricsFile }),
  passive: passiveSchema.meta({
    description: "watch the LAN's new TCP connections per link (conntrack events): when one link's go unanswered while the others' do not, probe it at once with a short burst and take it down if that fails too; false: probes only",
    default: HEALTH_DEFAULTS.passive,
  }),
  hookTimeout: z.number().int().min(1).max(300)
    .meta({ description: "seconds a link hook (`/etc/multiwan-hooks.d/*`) may run before it is killed and the next one runs", default: HEALTH_DEFAULTS.hookTimeout }),
};
const policyMember = z.union([
  linkName,
  z.strictObject({
    link: linkName.describe("the link"),
    weight: weight.optional().describe("its weight in this policy; default the link's own"),
    tier: tier.optional().describe("its tier in this policy; default the link's own"),
  }),
], { error: "must be a link name or { link, weight?, tier? }" });
/** Rules one policy's match may combine into (sources × destinations × interfaces × protocols × port groups). */
export const MAX_POLICY_MATCHES = 64;
export const POLICY_DEFAULTS = { sticky: "connection" as const, whenDown: "default" as const };
const policySchema = z.strictObject({
  name: name.describe("unique on the gateway: the configuration's handle for the policy"),
  match: z.strictObject({
    sources: z.array(networkCidr("sources6")).min(1).max(16).optional().describe("IPv4 source networks (LAN clients); omitted: any"),
    destinations: z.array(networkCidr("destinations6")).min(1).max(16).optional().describe("IPv4 destination networks; omitted: any"),
    sources6: z.array(network6("sources")).min(1).max(16).optional().describe("IPv6 source networks (LAN clients); omitted: any"),
    destinations6: z.array(network6("destinations")).min(1).max(16).optional()
      .describe("IPv6 destination networks; omitted: any. A policy with addresses of one family only takes no connection of the other"),
    protocols: z.array(protocol).min(1).optional().describe("protocols; omitted: any (with `ports`: tcp and udp)"),
    ports: z.array(port).min(1).max(64).optional().describe("destination ports of tcp, udp or sctp; omitted: any"),
    lanInterfaces: z.array(interfaceName).min(1).max(16).optional().describe("LAN interfaces the connection arrives on; omitted: any"),
  }).describe("which new connections the policy takes: all of the given conditions (each a list: any of its items)"),
  links: z.array(policyMember).min(1, "needs at least one member").max(MAX_LINKS).optional()
    .describe("the members, each a link name or { link, weight?, tier? }; omitted: every link with its own weight and tier"),
  sticky: z.enum(["connection", "source"]).optional()
    .meta({ description: "`connection`: each new connection is balanced on its own; `source`: the connections this policy takes from one LAN address all use one link while it is up (addresses spread over the links by weight)", default: POLICY_DEFAULTS.sticky }),
  whenDown: z.enum(["default", "unreachable"]).optional()
    .meta({ description: "no member is up: `default` hands the connections to the default balancing, `unreachable` refuses them (ICMP unreachable) — for traffic that must never leave through another line", default: POLICY_DEFAULTS.whenDown }),
});
const balancePolicies = z.array(policySchema).max(16)
  .describe("ordered traffic policies, first match wins; what none matches gets the default balancing (every link by its weight and tier, limited to `protocols`/`ports` when given); a gateway's list replaces the site's");
const balancePartial = z.strictObject({ ...balanceFields, policies: balancePolicies }).partial();
const healthPartial = z.strictObject(healthFields).partial();

const HOST_KEY_REQUIRED = "is required to pin the host's SSH key (a line of `ssh-keyscan HOST`), or set insecureSkipHostKeyCheck: true";

const sshHost = z.string()
  .refine((h) => /^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/.test(h) || z.ipv6().safeParse(h).success, "must be an IPv4 or IPv6 address or a DNS name")
  .meta({ title: "IPv4 or IPv6 address or DNS name" });
const sshPort = z.number().int().min(1).max(65535).default(22).describe("SSH port");
const unixUser = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "must be a Unix user name").meta({ title: "Unix user name" });
const hostKey = z
  .string()
  .max(16_384, "must be at most 16384 characters (one OpenSSH public key line)")
  .regex(HOST_KEY_LINE, "must be an OpenSSH public host key line as `ssh-keyscan HOST` prints it ('HOST ssh-ed25519 AAAA…'), or just 'ssh-ed25519 AAAA…'")
  .superRefine((line, ctx) => {
    const problem = hostKeyProblem(line);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  })
  .optional()
  .meta({ title: "OpenSSH public key line (ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256/384/521), host name first allowed" });
const insecureSkipHostKeyCheck = z.boolean().default(false).describe("connect without pinning the host key (not for production)");
const requireHostKey = (c: { hostKey?: string; insecureSkipHostKeyCheck: boolean }, ctx: z.RefinementCtx) => {
  if (!c.hostKey && !c.insecureSkipHostKeyCheck) ctx.addIssue({ code: "custom", path: ["hostKey"], message: HOST_KEY_REQUIRED });
};

const bastionSchema = z.strictObject({
    host: sshHost.describe("the bastion's SSH address, as the previous hop (or the machine running Pulumi) reaches it"),
    port: sshPort,
    user: unixUser.optional().describe("SSH user on the bastion; default the gateway's `user`"),
    hostKey: hostKey.describe("the bastion's host key, pinned (a line of `ssh-keyscan HOST`); required unless `insecureSkipHostKeyCheck`"),
    insecureSkipHostKeyCheck,
  })
  .superRefine(requireHostKey);

/** How the gateway is reached; checked on its own too, when its values come from other resources. */
export const connectionSchema = z.strictObject({
    host: sshHost.describe("the gateway's SSH address (through `proxyJump`: as the last bastion reaches it)"),
    port: sshPort,
    user: unixUser.default("root")
      .describe("SSH user: root, or a user allowed to run `sh` as root through sudo without a password (NOPASSWD) and `sudo: true` (installing the bundle needs root)"),
    sudo: z.boolean().default(false)
      .describe("run every command on the gateway through `sudo -n` (for a non-root `user`; sudo must not ask for a password)"),
    hostKey: hostKey.describe("the gateway's host key, pinned (a line of `ssh-keyscan HOST`); required unless `insecureSkipHostKeyCheck`"),
    insecureSkipHostKeyCheck,
    proxyJump: z.array(bastionSchema).min(1).max(8).optional()
      .describe("bastions reached in order, the gateway through the last one (like `ssh -J`); each with its own pinned host key"),
    agent: z.boolean().default(false)
      .describe("authenticate with the ssh-agent at `SSH_AUTH_SOCK` of the machine running Pulumi or the CLI (then `multiwan:sshPrivateKey` is optional)"),
    rollbackAfter: z.number().int().min(5).max(600).default(60)
      .describe("seconds after which an apply not confirmed over a fresh SSH connection rolls itself back"),
  })
  .superRefine(requireHostKey)
  .describe("how Pulumi and `multiwan drift` reach the gateway over SSH; the key is the secret `multiwan:sshPrivateKey` (with `multiwan:sshPrivateKeyPassphrase` if it has one), or the ssh-agent");

export const gatewaySchema = z.strictObject({
  name: name.describe("unique in the site: the CLI's `--gateway` and the Pulumi resource names"),
  connection: connectionSchema,
  root: z
    .string()
    .max(ROOT_MAX_LENGTH, `must be at most ${ROOT_MAX_LENGTH} characters`)
    .regex(ROOT_PATTERN, "must be an absolute path of A-Z a-z 0-9 . _ - segments")
    .refine(noDotDot, "must not contain '..'")
    .default("/")
    .meta({
      title: `absolute path of A-Z a-z 0-9 . _ - segments, no .., at most ${ROOT_MAX_LENGTH} characters`,
      description: "install prefix on the gateway (`MULTIWAN_ROOT` of `apply.sh`): the bundle goes to `<root>/etc/multiwan`",
    }),
  lan: z.strictObject({
    interfaces: z.array(interfaceName).min(1).max(16).describe("LAN interfaces: new connections arriving on them are balanced"),
    networks: z.array(lanNetwork).max(64).optional()
      .describe("IPv4 LAN networks: NATed on every link, never balanced as destinations; omitted: the gateway routes no IPv4"),
    networks6: z.array(prefix6("networks")).max(64).optional()
      .describe("IPv6 LAN networks: translated per link (`nat6`), never balanced as destinations; omitted: the gateway routes no IPv6"),
  }).describe("the gateway's LAN side: `networks`, `networks6` or both (dual stack)"),
  links: z.array(linkSchema).min(2, LINK_COUNT).max(MAX_LINKS, LINK_COUNT)
    .describe("the uplinks; their order sets the default marks and tables"),
  balance: balancePartial.optional().describe("overrides the site's `balance` for this gateway, key by key"),
  health: healthPartial.optional().describe("overrides the site's `health` for this gateway, key by key"),
});

export const siteSchema = z.strictObject({
  gateways: z.array(gatewaySchema).min(1, "needs at least one gateway").describe("the site's gateways, each planned and pushed on its own"),
  balance: balancePartial.optional()
    .describe("which new connections are balanced, on every gateway (over `multiwan:defaults`, under a gateway's own)"),
  health: healthPartial.optional()
    .describe("when a link counts as down or up, on every gateway (over `multiwan:defaults`, under a gateway's own)"),
});

type RawGateway = z.infer<typeof gatewaySchema>;
/** One gateway as written in config (before defaults): what the Gateway component takes. */
export type GatewayInput = z.input<typeof gatewaySchema>;
export type Connection = z.infer<typeof connectionSchema>;
export type Link = z.infer<typeof linkSchema> & { mark: number; table: number };
/** A policy member with the link's own weight and tier filled in. */
export interface PolicyMember {
  link: string;
  weight: number;
  tier: number;
}
export type Policy = Omit<z.infer<typeof policySchema>, "links" | "sticky" | "whenDown"> & {
  /** Undefined: every link, with its own weight and tier. */
  members?: PolicyMember[];
  sticky: "connection" | "source";
  whenDown: "default" | "unreachable";
};
export type Balance = Omit<z.infer<typeof balancePartial>, "policies"> & typeof BALANCE_DEFAULTS & {
  protocols?: z.infer<typeof protocol>[];
  ports?: (number | string)[];
  policies: Policy[];
};
export type Quality = z.infer<typeof qualitySchema>;
export type Passive = z.infer<typeof passiveSchema>;
export type Health = typeof HEALTH_DEFAULTS & { quality?: Quality };
/** One gateway with every default filled in and site-level settings merged. */
export type Gateway = Omit<RawGateway, "lan" | "links" | "balance" | "health"> & {
  /** `networks`, `networks6`: empty where the gateway does not route that family. */
  lan: { interfaces: string[]; networks: string[]; networks6: string[] };
  links: Link[];
  balance: Balance;
  health: Health;
};
export type Site = { gateways: Gateway[] };

type Problem = { path: string; message: string };

/** zod's issues as problems, an unknown key named by its own path. */
function problemsOf(error: z.ZodError, prefix: PropertyKey[] = []): Problem[] {
  return error.issues.flatMap((issue) =>
    issue.code === "unrecognized_keys"
      ? issue.keys.map((key) => ({ path: formatPath([...prefix, ...issue.path, key]), message: "unknown key" }))
      : [{ path: formatPath([...prefix, ...issue.path]), message: issue.message }],
  );
}

/** Parse and check a site config; throws ConfigError listing every problem. */
export function parseSite(input: unknown): Site {
  const parsed = siteSchema.safeParse(input);
  const problems: Problem[] = [];
  if (!parsed.success) {
    problems.push(...problemsOf(parsed.error), ...duplicateGatewayNames(input));
    throw new ConfigError(problems);
  }
  const site = parsed.data;
  problems.push(...duplicateGatewayNames(site));
  const gateways = site.gateways.map((gw, i) => resolveGateway(gw, site, `gateways[${i}]`, problems));
  if (problems.length) throw new ConfigError(problems);
  return { gateways };
}

/**
 * One gateway (the Gateway component's `config`): the same checks as in a site, with paths under
 * `at` (`config.links[0].weight`).
 */
export function parseGateway(input: unknown, at = "config"): Gateway {
  try {
    return parseSite({ gateways: [input] }).gateways[0];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    throw new ConfigError(e.problems.map((p) => ({ ...p, path: p.path.replace(/^gateways\[0\]/, at) })));
  }
}

/** A gateway's connection alone, for values known only once other resources exist. */
export function parseConnection(input: unknown, at = "config.connection"): Connection {
  const parsed = connectionSchema.safeParse(input);
  if (!parsed.success) throw new ConfigError(problemsOf(parsed.error, [at]));
  return parsed.data;
}

function duplicateGatewayNames(input: unknown): Problem[] {
  const gws = (input as { gateways?: unknown })?.gateways;
  if (!Array.isArray(gws)) return [];
  return duplicates(gws.map((g) => (g as { name?: unknown })?.name)).map((i) => ({
    path: `gateways[${i}].name`,
    message: `duplicate gateway name "${String(gws[i].name)}"`,
  }));
}

/** Indices of values (strings or numbers) that already appeared earlier in the list. */
function duplicates(values: unknown[]): number[] {
  const seen = new Set<unknown>();
  const out: number[] = [];
  values.forEach((v, i) => {
    if (v === undefined) return;
    if (seen.has(v)) out.push(i);
    seen.add(v);
  });
  return out;
}

/** What parseSite checks beyond each field's own schema, in words for the configuration reference: keep in step. */
export const CROSS_FIELD_RULES = [
  "Gateway names are unique in the site.",
  "`connection.hostKey` is required unless `connection.insecureSkipHostKeyCheck` is true; so is each `connection.proxyJump[]` bastion's `hostKey` unless its own `insecureSkipHostKeyCheck`.",
  "On a gateway, link names, link interfaces, explicit marks and explicit tables are unique; LAN interfaces are unique and none is a link interface.",
  "A link's `gateway` differs from its `address`; when `address` has a `/prefix`, `gateway` is on that subnet and (up to /30) `address` is not its network or broadcast address.",
  "A link's `address` and `gateway` are outside the gateway's LAN networks; no two links have the same `address`.",
  "A probe target is no link's `address` (the gateway would answer it itself) and outside the LAN networks (the probe would go to the LAN).",
  "`check.reliability` is at most the number of `check.targets`.",
  "`balance.ports` only with `balance.protocols` among tcp, udp and sctp.",
  "`health.timeout` ≤ `health.interval` × `health.down`, after site and gateway settings are merged.",
  "A gateway has `lan.networks`, `lan.networks6` or both; IPv4 fields (`gateway`, `address`, `check.targets`) only where it routes IPv4, IPv6 fields (`gateway6`, `address6`, `prefix6`, `nat6`, `check.targets6`) only where it routes IPv6, and a value of the other family is refused with the field it belongs in. Every link carries IPv4 when the gateway routes it and needs `check.targets`; a link carries IPv6 when it has one of its IPv6 fields and then needs `check.targets6`; at least one link carries IPv6 where the gateway routes it.",
  "IPv6: `lan.networks6` do not overlap each other or `balance.exclude6`; `address6` and a global `gateway6` are outside them, `gateway6` is on `address6`'s subnet when that has a `/prefix`, no two links have the same `address6`; a probe target is no link's `address6`, outside the LAN and outside every npt link's `prefix6`.",
  "`prefix6` only with `nat6: npt` (not overlapping the LAN; the one LAN network not numbered from a `none` link, of the same prefix length) or `nat6: none` (one of `lan.networks6`); links' prefixes do not overlap.",
  `The failover variants (one per non-empty set of live links, each with the splits of the default balancing and of every policy, whose rules depend on the weights' ratios) hold at most ${MAX_VARIANT_RULES} rules: ${MAX_LINKS} links of weight 1 fit, ${MAX_LINKS + 1} do not.`,
  `Policy names are unique on a gateway; a policy's members are links of the gateway, each once; \`whenDown\` needs \`links\`; \`match.lanInterfaces\` are LAN interfaces; \`match.ports\` only with \`match.protocols\` among tcp, udp and sctp; a policy's lists combine into at most ${MAX_POLICY_MATCHES} rules (sources × destinations × lanInterfaces × protocols × groups of 15 ports). A gateway's \`balance.policies\` replaces the site's.`,
  `The link names joined by \`+\` have at most ${MAX_LINK_NAMES_LENGTH} characters (${MAX_LINK_NAMES_LENGTH - 1} where the gateway routes IPv6): each set of live links is a file \`variants/<names>.rules\` (and \`.rules6\`) in the bundle, and a tar entry's name holds ${TAR_NAME_MAX} bytes.`,
];

function resolveGateway(gw: RawGateway, site: z.infer<typeof siteSchema>, at: string, problems: Problem[]): Gateway {
  const merged = { ...BALANCE_DEFAULTS, ...site.balance, ...gw.balance };
  const health = { ...HEALTH_DEFAULTS, ...site.health, ...gw.health };
  const links = assignMarksAndTables(gw.links);
  const problem = (path: string, message: string) => problems.push({ path: `${at}.${path}`, message });
  // Policies come from the gateway's balance or, without one there, the site's: report them there.
  const policyProblem = gw.balance?.policies
    ? (path: string, message: string) => problem(`balance.policies${path}`, message)
    : (path: string, message: string) => problems.push({ path: `balance.policies${path}`, message: `${message} (on gateway ${gw.name})` });
  const balance = { ...merged, policies: resolvePolicies(merged.policies ?? [], links, gw.lan.interfaces, policyProblem) } as Balance;

  for (const i of duplicates(links.map((l) => l.name))) problem(`links[${i}].name`, `duplicate link name "${links[i].name}"`);
  for (const i of duplicates(links.map((l) => l.interface)))
    problem(`links[${i}].interface`, `interface "${links[i].interface}" is already used by another link`);
  for (const i of duplicates(gw.links.map((l) => l.mark))) problem(`links[${i}].mark`, `duplicate mark ${gw.links[i].mark}`);
  for (const i of duplicates(gw.links.map((l) => l.table))) problem(`links[${i}].table`, `duplicate table ${gw.links[i].table}`);
  for (const i of duplicates(gw.lan.interfaces)) problem(`lan.interfaces[${i}]`, "duplicate LAN interface");
  gw.lan.interfaces.forEach((ifname, i) => {
    if (links.some((l) => l.interface === ifname)) problem(`lan.interfaces[${i}]`, `"${ifname}" is also a link interface`);
  });

  const lanNetworks = gw.lan.networks ?? [];
  const lanNetworks6 = gw.lan.networks6 ?? [];
  const families = { 4: lanNetworks.length > 0, 6: lanNetworks6.length > 0 };
  if (!families[4] && !families[6]) problem("lan.networks", "needs at least one LAN network: `networks` (IPv4), `networks6` (IPv6) or both");
  // A gateway's own lists of a family it does not route would do nothing (the site's apply where it is routed).
  for (const [family, field] of [[4, "exclude"], [6, "exclude6"]] as const)
    if (!families[family] && gw.balance?.[field]?.length) problem(`balance.${field}`, `the gateway routes no IPv${family} (no \`lan.${family === 4 ? "networks" : "networks6"}\`): these exclusions would do nothing`);
  gw.balance?.policies?.forEach((p, i) => {
    const { sources, destinations, sources6, destinations6 } = p.match;
    const only = (sources || destinations) && !(sources6 || destinations6) ? 4 : (sources6 || destinations6) && !(sources || destinations) ? 6 : undefined;
    if (only && !families[only]) problem(`balance.policies[${i}].match`, `names IPv${only} addresses only, and the gateway routes no IPv${only}: the policy would take nothing`);
  });
  checkIpv6(gw, links, families[6], balance, problem, gw.balance?.exclude6
    ? (path, message) => problem(`balance.${path}`, message)
    : (path, message) => problems.push({ path: `balance.${path}`, message: `${message} (on gateway ${gw.name})` }));

  links.forEach((link, i) => {
    const targets = link.check.targets ?? [];
    if (!families[4]) {
      for (const field of ["gateway", "address"] as const)
        if (link[field] !== undefined) problem(`links[${i}].${field}`, "the gateway routes no IPv4 (no `lan.networks`): remove it, or add the IPv4 LAN");
      if (link.check.targets) problem(`links[${i}].check.targets`, "the gateway routes no IPv4 (no `lan.networks`): probe over IPv6 (`check.targets6`)");
    } else if (!targets.length) {
      problem(`links[${i}].check.targets`, "needs IPv4 probe targets: the gateway routes IPv4 (`lan.networks`), and only a probe over IPv4 sees that family fail");
    }
    const addr = link.address?.split("/")[0];
    if (link.gateway && addr === link.gateway) problem(`links[${i}].gateway`, "must differ from the link's address");
    if (link.gateway && link.address?.includes("/")) {
      const subnet = parseCidr(link.address);
      if (!inSubnet(parseIpv4(link.gateway), subnet))
        problem(`links[${i}].gateway`, `${link.gateway} is not on the link's subnet ${formatIpv4(subnet.network)}/${subnet.prefix}`);
      else if (subnet.prefix <= 30 && [subnet.network, subnet.broadcast].includes(parseIpv4(addr!)))
        problem(`links[${i}].address`, `${addr} is the network or broadcast address of its subnet`);
    }
    for (const [field, value] of [["address", addr], ["gateway", link.gateway]] as const) {
      const lan = value && lanNetworks.find((n) => inSubnet(parseIpv4(value), parseCidr(n)));
      if (lan) problem(`links[${i}].${field}`, `${value} is inside LAN network ${lan}`);
    }
    const other = links.findIndex((l, j) => j < i && addr && l.address?.split("/")[0] === addr);
    if (other >= 0) problem(`links[${i}].address`, `${addr} is also the address of link ${links[other].name}`);
    targets.forEach((target, t) => {
      const owner = links.find((l) => l.address?.split("/")[0] === target);
      const lan = lanNetworks.find((n) => inSubnet(parseIpv4(target), parseCidr(n)));
      if (owner)
        problem(`links[${i}].check.targets[${t}]`, `${target} is ${owner === link ? "the link's own address" : `the address of link ${owner.name}`}: the gateway answers it itself, so the probe never tests the uplink`);
      else if (lan) problem(`links[${i}].check.targets[${t}]`, `${target} is inside LAN network ${lan}: the probe would go to the LAN, not through the link`);
    });
    for (const [field, list] of [["targets", targets], ["targets6", link.check.targets6 ?? []]] as const)
      if (list.length && link.check.reliability > list.length)
        problem(`links[${i}].check.reliability`, `is ${link.check.reliability} but check.${field} lists only ${list.length} target(s): it counts the answers of each family`);
  });

  if (balance.ports && balance.protocols?.some((p) => p !== "tcp" && p !== "udp" && p !== "sctp"))
    problem("balance.ports", "ports apply only to tcp, udp and sctp: remove the other protocols or the ports");
  if (health.timeout > health.interval * health.down)
    problem("health.timeout", `must not exceed interval × down (${health.interval * health.down} s)`);

  const budget = variantRules(links, balance.policies);
  if (budget.links > MAX_VARIANT_RULES) {
    problem("links", `the ${links.length} links' failover variants would need more than ${MAX_VARIANT_RULES} rules: use fewer links, or weights in simpler ratios (rounded to multiples of 10, say)`);
  } else if (budget.total > MAX_VARIANT_RULES) {
    const worst = budget.policies.indexOf(Math.max(...budget.policies));
    const advice = balance.policies[worst].sticky === "source" ? "fewer members, or `sticky: connection`" : "fewer members, or weights in simpler ratios";
    policyProblem(`[${worst}]`, `its rules in the failover variants take them past ${MAX_VARIANT_RULES} rules: give it ${advice}`);
  }
  const names = links.map((l) => l.name).join("+");
  const routes6 = lanNetworks6.length > 0;
  if (names.length > maxLinkNames(routes6))
    problem("links", `the link names are too long together: the all-links variant file ${VARIANT_FILE(names, routes6)} would be ${VARIANT_FILE(names, routes6).length} bytes, over the ${TAR_NAME_MAX}-byte limit of a tar entry name: shorten them to at most ${maxLinkNames(routes6)} characters in total, counting a + between names (now ${names.length})`);

  return { ...gw, lan: { ...gw.lan, networks: lanNetworks, networks6: lanNetworks6 }, links, balance, health };
}

const LINK_LOCAL = parseCidr6("fe80::/10");

/** On a gateway with IPv6 LAN networks, the links that carry IPv6 are those with IPv6 settings. */
export const carriesIpv6 = (l: Pick<Link, "gateway6" | "address6" | "prefix6" | "nat6">): boolean =>
  [l.gateway6, l.address6, l.prefix6, l.nat6].some((v) => v !== undefined);

/**
 * The IPv6 side of a gateway: fields only where it routes IPv6, probes over IPv6 where it does,
 * addresses and prefixes where they can work (NPT 1:1 between prefixes of one length), LAN
 * networks and exclusions that do not overlap. `excludeProblem` reports under the `balance` the
 * exclusions came from.
 */
function checkIpv6(gw: RawGateway, links: Link[], routes6: boolean, balance: Balance, problem: (path: string, message: string) => void, excludeProblem: (path: string, message: string) => void): void {
  const lan6 = (gw.lan.networks6 ?? []).map((n) => ({ text: n, subnet: parseCidr6(n) }));
  lan6.forEach((n, j) => {
    const k = lan6.findIndex((m, i) => i < j && overlaps6(m.subnet, n.subnet));
    if (k >= 0) problem(`lan.networks6[${j}]`, `overlaps lan.networks6[${k}] (${lan6[k].text})`);
  });
  balance.exclude6.forEach((e, j) => {
    const lan = lan6.find((n) => overlaps6(n.subnet, parseCidr6(e)));
    if (lan) excludeProblem(`exclude6[${j}]`, `overlaps LAN network ${lan.text}: LAN destinations are never balanced, and LAN sources must be`);
  });
  const insideLan = (value: string) => lan6.find((n) => inSubnet6(parseIpv6(value), n.subnet))?.text;
  const pinned = links.filter((l) => l.nat6 === "none" && l.prefix6).map((l) => parseCidr6(l.prefix6!));
  // What an npt link maps: the LAN's IPv6 networks but those numbered from a `none` link's prefix.
  const translated = lan6.filter((n) => !pinned.some((p) => p.network === n.subnet.network && p.prefix === n.subnet.prefix));

  if (routes6 && !links.some(carriesIpv6))
    problem("lan.networks6", "no link carries IPv6: give the links that do `gateway6` (or `nat6` for a device route)");
  links.forEach((link, i) => {
    const at = `links[${i}]`;
    if (!routes6) {
      for (const field of ["gateway6", "address6", "prefix6", "nat6"] as const)
        if (link[field] !== undefined) problem(`${at}.${field}`, "the gateway routes no IPv6 (no `lan.networks6`): remove it, or add the IPv6 LAN");
      if (link.check.targets6) problem(`${at}.check.targets6`, "the gateway routes no IPv6 (no `lan.networks6`): probe over IPv4 (`check.targets`)");
      return;
    }
    if (!carriesIpv6(link)) {
      if (link.check.targets6) problem(`${at}.check.targets6`, "the link carries no IPv6 (no `gateway6`, `address6`, `prefix6` or `nat6`): its probes would not test what it carries");
      if (!gw.lan.networks?.length) problem(`${at}`, "carries nothing: the gateway routes IPv6 only, and this link has no `gateway6`, `address6`, `prefix6` or `nat6`");
      return;
    }
    if (!link.check.targets6?.length)
      problem(`${at}.check.targets6`, "needs IPv6 probe targets: the link carries IPv6 (`gateway6`, `address6`, `prefix6` or `nat6`), and only a probe over IPv6 sees that family fail");
    const addr = link.address6?.split("/")[0];
    const gateway6 = link.gateway6;
    if (gateway6 && addr && parseIpv6(gateway6) === parseIpv6(addr)) problem(`${at}.gateway6`, "must differ from the link's address6");
    if (gateway6 && link.address6?.includes("/") && !inSubnet6(parseIpv6(gateway6), LINK_LOCAL) && !inSubnet6(parseIpv6(gateway6), parseCidr6(link.address6)))
      problem(`${at}.gateway6`, `${gateway6} is not on the link's subnet ${link.address6.split("/")[0]}/${link.address6.split("/")[1]} (a link-local fe80:: next hop is always on the link)`);
    for (const [field, value] of [["address6", addr], ["gateway6", gateway6]] as const) {
      const lan = value && insideLan(value);
      if (lan) problem(`${at}.${field}`, `${value} is inside LAN network ${lan}`);
    }
    const other = links.findIndex((l, j) => j < i && addr && l.address6 && parseIpv6(l.address6.split("/")[0]) === parseIpv6(addr));
    if (other >= 0) problem(`${at}.address6`, `${addr} is also the address6 of link ${links[other].name}`);
    link.check.targets6?.forEach((target, t) => {
      const value = parseIpv6(target);
      const owner = links.find((l) => l.address6 && parseIpv6(l.address6.split("/")[0]) === value);
      const lan = insideLan(target);
      const mapped = links.find((l) => l.nat6 === "npt" && l.prefix6 && inSubnet6(value, parseCidr6(l.prefix6)));
      if (owner) problem(`${at}.check.targets6[${t}]`, `${target} is ${owner === link ? "the link's own address6" : `the address6 of link ${owner.name}`}: the gateway answers it itself, so the probe never tests the uplink`);
      else if (lan) problem(`${at}.check.targets6[${t}]`, `${target} is inside LAN network ${lan}: the probe would go to the LAN, not through the link`);
      else if (mapped) problem(`${at}.check.targets6[${t}]`, `${target} is inside the prefix6 of link ${mapped.name}, which maps onto the LAN: the probe would go to the LAN`);
    });

    const nat6 = link.nat6 ?? "masquerade";
    if (nat6 === "masquerade" && link.prefix6) problem(`${at}.prefix6`, "only with `nat6: npt` or `nat6: none`: masquerading translates to the link's address, not a prefix");
    if (nat6 !== "masquerade" && !link.prefix6) problem(`${at}.prefix6`, `is needed for \`nat6: ${nat6}\`: ${nat6 === "npt" ? "the provider's prefix the LAN is mapped onto" : "the provider's prefix the LAN is numbered from"}`);
    if (!link.prefix6) return;
    const prefix = parseCidr6(link.prefix6);
    const overlapping = links.findIndex((l, j) => j < i && l.prefix6 && overlaps6(parseCidr6(l.prefix6), prefix));
    if (overlapping >= 0) problem(`${at}.prefix6`, `overlaps the prefix6 of link ${links[overlapping].name} (${links[overlapping].prefix6})`);
    if (nat6 === "none") {
      if (!lan6.some((n) => n.subnet.network === prefix.network && n.subnet.prefix === prefix.prefix))
        problem(`${at}.prefix6`, `with \`nat6: none\` it must be one of lan.networks6 (${lan6.map((n) => n.text).join(", ")}): the LAN network numbered from this provider`);
      return;
    }
    const lan = lan6.find((n) => overlaps6(n.subnet, prefix));
    if (lan) problem(`${at}.prefix6`, `overlaps LAN network ${lan.text}: \`nat6: npt\` maps the LAN onto the provider's own prefix`);
    else if (translated.length !== 1)
      problem(`${at}.nat6`, `\`npt\` maps one LAN network onto prefix6, but lan.networks6 has ${translated.length} besides those of \`nat6: none\` links (${translated.map((n) => n.text).join(", ") || "none"}): keep one, or use masquerade`);
    else if (translated[0].subnet.prefix !== prefix.prefix)
      problem(`${at}.prefix6`, `is a /${prefix.prefix} but the LAN network it maps (${translated[0].text}) is a /${translated[0].subnet.prefix}: NPT maps prefixes of the same length (the kernel would accept both and translate wrongly)`);
  });
}

/** Marks default to the link's position (1, 2, …) and tables to 100 + mark, skipping explicit ones. */
function assignMarksAndTables(links: RawGateway["links"]): Link[] {
  const usedMarks = new Set(links.map((l) => l.mark).filter((m) => m !== undefined));
  const usedTables = new Set(links.map((l) => l.table).filter((t) => t !== undefined));
  let nextMark = 1;
  let nextTable = 101;
  return links.map((l) => {
    let mark = l.mark;
    if (mark === undefined) {
      while (usedMarks.has(nextMark)) nextMark++;
      mark = nextMark++;
    }
    let table = l.table;
    if (table === undefined) {
      while (usedTables.has(nextTable)) nextTable++;
      table = nextTable++;
    }
    return { ...l, mark, table };
  });
}

/**
 * Policies with their members resolved to { link, weight, tier }; problems of their own (names,
 * members, interfaces, ports) reported through `problem` with a path below `balance.policies`.
 */
function resolvePolicies(raw: z.infer<typeof balancePolicies>, links: Link[], lanInterfaces: string[], problem: (path: string, message: string) => void): Policy[] {
  for (const i of duplicates(raw.map((p) => p.name))) problem(`[${i}].name`, `duplicate policy name "${raw[i].name}"`);
  return raw.map((p, i) => {
    const { links: given, sticky = POLICY_DEFAULTS.sticky, whenDown, ...rest } = p;
    if (whenDown !== undefined && given === undefined)
      problem(`[${i}].whenDown`, "needs `links`: without members the policy uses every link, so there is nothing to fall back from");
    const { ports, protocols, lanInterfaces: ifaces, sources, destinations } = p.match;
    if (ports && protocols?.some((x) => x !== "tcp" && x !== "udp" && x !== "sctp"))
      problem(`[${i}].match.ports`, "ports apply only to tcp, udp and sctp: remove the other protocols or the ports");
    // One MWAN-CLASSIFY rule per combination, walked by every new connection the policies above miss.
    const portRules = ports ? Math.ceil(ports.reduce<number>((n, x) => n + (typeof x === "string" ? 2 : 1), 0) / 15) : 1;
    const { sources6, destinations6 } = p.match;
    const combinations = Math.max(...[[sources, destinations], [sources6, destinations6]].map(([from, to]) =>
      [from, to, ifaces, protocols ?? (ports ? ["tcp", "udp"] : undefined)].reduce((n, list) => n * (list?.length ?? 1), portRules)));
    if (combinations > MAX_POLICY_MATCHES)
      problem(`[${i}].match`, `its lists combine into ${combinations} rules (max ${MAX_POLICY_MATCHES}): every new connection that reaches the policy walks them; split it into several policies or shorten the lists`);
    ifaces?.forEach((name, j) => {
      if (!lanInterfaces.includes(name)) problem(`[${i}].match.lanInterfaces[${j}]`, `"${name}" is not a LAN interface (lan.interfaces: ${lanInterfaces.join(", ")})`);
    });
    const members = given?.flatMap((m, j) => {
      const spec = typeof m === "string" ? { link: m } : m;
      const link = links.find((l) => l.name === spec.link);
      if (!link) {
        problem(`[${i}].links[${j}]`, `unknown link "${spec.link}" (links: ${links.map((l) => l.name).join(", ")})`);
        return [];
      }
      return [{ link: link.name, weight: spec.weight ?? link.weight, tier: spec.tier ?? link.tier }];
    });
    if (given) for (const j of duplicates(given.map((m) => (typeof m === "string" ? m : m.link)))) problem(`[${i}].links[${j}]`, "the link is already a member");
    return { ...rest, ...(members ? { members } : {}), sticky, whenDown: whenDown ?? POLICY_DEFAULTS.whenDown };
  });
}

type TieredLink = { name: string; weight: number; tier: number };

/**
 * Rules of the balancing chains over all live-link subsets: the default split of each (planSplit
 * over the live links of its best tier) and each policy's. Counting stops past MAX_VARIANT_RULES.
 */
export function variantRules(links: TieredLink[], policies: Policy[]): { total: number; links: number; policies: number[] } {
  const everyLink = links.map((l) => ({ link: l.name, weight: l.weight, tier: l.tier }));
  const liveSets = Array.from({ length: (1 << links.length) - 1 }, (_, i) => new Set(links.filter((_, k) => (i + 1) & (1 << k)).map((l) => l.name)));
  // No member live: one rule, the policy's fallback.
  const rules = (members: PolicyMember[], sticky: Policy["sticky"], live: Set<string>) =>
    !carrying(members, live).length ? 1 : sticky === "source" ? stickyRuleCount(members, live) : splitRuleCount(carryingWeights(links, members, live));
  const count = { total: 0, links: 0, policies: policies.map(() => 0) };
  for (const live of liveSets) {
    if (count.links > MAX_VARIANT_RULES) break;
    count.links += rules(everyLink, "connection", live);
  }
  count.total = count.links;
  policies.forEach((p, i) => {
    for (const live of liveSets) {
      if (count.total > MAX_VARIANT_RULES) return;
      // Without members, a policy balancing per connection jumps to the default split: one rule.
      const n = !p.members && p.sticky === "connection" ? 1 : rules(p.members ?? everyLink, p.sticky, live);
      count.policies[i] += n;
      count.total += n;
    }
  });
  return count;
}


type Section = Record<string, unknown> | undefined;
export interface SiteDefaults {
  balance?: Section;
  health?: Section;
}

/** `multiwan:defaults` (shared by every site of a project) under a site's own balance/health keys. */
export function withDefaults(raw: Record<string, unknown>, defaults: SiteDefaults = {}): Record<string, unknown> {
  return {
    ...raw,
    ...(defaults.balance || raw.balance ? { balance: { ...defaults.balance, ...(raw.balance as Section) } } : {}),
    ...(defaults.health || raw.health ? { health: { ...defaults.health, ...(raw.health as Section) } } : {}),
  };
}
