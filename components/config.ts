// The site configuration: one zod schema for stack config (`multiwan:site`) and CLI YAML files.
// Every value that reaches a rule or a shell line is whitelisted here, so nothing from config can
// become an extra shell word or iptables option.
import { z } from "zod";
import { parseCidr, parseIpv4, inSubnet, formatIpv4 } from "./ipv4";

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
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/, "must be a Linux interface name: 1-15 of A-Z a-z 0-9 _ . - (not starting with - or .)");

const name = z.string().regex(/^[a-z][a-z0-9_-]{0,30}$/, "must be 1-31 of a-z 0-9 _ - starting with a letter");
const linkName = z.string().regex(/^[a-z][a-z0-9_-]{0,14}$/, "must be 1-15 of a-z 0-9 _ - starting with a letter");

const networkCidr = z.cidrv4({ message: "must be an IPv4 network in CIDR form, e.g. 198.51.100.0/24" }).refine(
  (c) => parseCidr(c).network === parseIpv4(c.split("/")[0]),
  { message: "has host bits set: write the network address (iptables would silently change it)" },
);
const ipv4 = z.ipv4({ message: "must be an IPv4 address, e.g. 203.0.113.2" });
// SNAT source: an address, optionally with the link's prefix length so the gateway can be checked.
const addressWithPrefix = z
  .string()
  .regex(/^[0-9.]+(\/[0-9]{1,2})?$/, "must be an IPv4 address, optionally with /prefix, e.g. 203.0.113.2/30")
  .refine((s) => z.ipv4().safeParse(s.split("/")[0]).success && (!s.includes("/") || Number(s.split("/")[1]) <= 32), {
    message: "must be an IPv4 address, optionally with /prefix, e.g. 203.0.113.2/30",
  });

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
);

export const RESERVED_TABLES = [0, 253, 254, 255];
/** Ceiling on rules across all pre-rendered variants: 2^N-1 of them, each as long as its weights. */
export const MAX_VARIANT_RULES = 25_000;

const linkSchema = z.strictObject({
  name: linkName,
  interface: interfaceName,
  gateway: ipv4.optional().describe("next hop; omit for a device route (PPP)"),
  address: addressWithPrefix.optional().describe("SNAT source; omit to MASQUERADE"),
  weight: z.number().int().min(1).max(1000).default(1),
  mark: z.number().int().min(1).max(255).optional().describe("value of the link's mark byte (bits 8-15)"),
  table: z
    .number()
    .int()
    .min(1)
    .max(2_147_483_647)
    .refine((t) => !RESERVED_TABLES.includes(t), "must not be 0, 253, 254 or 255 (reserved by the kernel)")
    .optional(),
  check: z.strictObject({
    targets: z.array(ipv4).min(1, "needs at least one probe target").max(8),
    reliability: z.number().int().min(1).default(1).describe("targets that must answer for the link to count as up"),
  }),
});

const protocol = z.enum(["tcp", "udp", "icmp", "sctp"]);
const balanceFields = {
  exclude: z.array(networkCidr).max(64),
  protocols: z.array(protocol).min(1),
  ports: z.array(port).min(1).max(64),
  local: z.boolean(),
  inboundSticky: z.boolean(),
  lastResort: z.enum(["all", "main"]).describe("when every link is down: keep balancing over all, or use the main table"),
};
const healthFields = {
  interval: z.number().min(0.1).max(60),
  timeout: z.number().min(0.1).max(30),
  down: z.number().int().min(1).max(100),
  up: z.number().int().min(1).max(100),
  flushConntrack: z.boolean(),
};
const balancePartial = z.strictObject(balanceFields).partial();
const healthPartial = z.strictObject(healthFields).partial();

export const BALANCE_DEFAULTS = {
  exclude: [] as string[],
  local: false,
  inboundSticky: true,
  lastResort: "all" as const,
};
export const HEALTH_DEFAULTS = { interval: 0.5, timeout: 1, down: 3, up: 5, flushConntrack: true };

const gatewaySchema = z.strictObject({
  name,
  connection: z.strictObject({
    host: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/, "must be an IPv4 address or a DNS name"),
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, "must be a Unix user name").default("root"),
    hostKey: z
      .string()
      .regex(/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+( \S*)?$/, "must be an OpenSSH public host key line, e.g. 'ssh-ed25519 AAAA…'")
      .optional(),
    insecureSkipHostKeyCheck: z.boolean().default(false).describe("connect without pinning the host key (not for production)"),
    rollbackAfter: z.number().int().min(5).max(600).default(60).describe("seconds after which an unconfirmed apply rolls itself back"),
  }),
  root: z
    .string()
    .regex(/^\/([A-Za-z0-9._-]+\/?)*$/, "must be an absolute path of A-Z a-z 0-9 . _ - segments")
    .refine((p) => !p.split("/").includes(".."), "must not contain '..'")
    .default("/"),
  lan: z.strictObject({
    interfaces: z.array(interfaceName).min(1).max(16),
    networks: z.array(networkCidr).min(1).max(64),
  }),
  links: z.array(linkSchema).min(2, "needs 2 to 16 links").max(16, "needs 2 to 16 links"),
  balance: balancePartial.optional(),
  health: healthPartial.optional(),
});

export const siteSchema = z.strictObject({
  gateways: z.array(gatewaySchema).min(1, "needs at least one gateway"),
  balance: balancePartial.optional(),
  health: healthPartial.optional(),
});

type RawGateway = z.infer<typeof gatewaySchema>;
export type Link = z.infer<typeof linkSchema> & { mark: number; table: number };
export type Balance = z.infer<typeof balancePartial> & typeof BALANCE_DEFAULTS & {
  protocols?: z.infer<typeof protocol>[];
  ports?: (number | string)[];
};
export type Health = typeof HEALTH_DEFAULTS;
/** One gateway with every default filled in and site-level settings merged. */
export type Gateway = Omit<RawGateway, "links" | "balance" | "health"> & {
  links: Link[];
  balance: Balance;
  health: Health;
};
export type Site = { gateways: Gateway[] };

type Problem = { path: string; message: string };

/** Parse and check a site config; throws ConfigError listing every problem. */
export function parseSite(input: unknown): Site {
  const parsed = siteSchema.safeParse(input);
  const problems: Problem[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      if (issue.code === "unrecognized_keys") {
        for (const key of issue.keys) problems.push({ path: formatPath([...issue.path, key]), message: "unknown key" });
      } else {
        problems.push({ path: formatPath(issue.path), message: issue.message });
      }
    }
    problems.push(...duplicateGatewayNames(input));
    throw new ConfigError(problems);
  }
  const site = parsed.data;
  problems.push(...duplicateGatewayNames(site));
  const gateways = site.gateways.map((gw, i) => resolveGateway(gw, site, `gateways[${i}]`, problems));
  if (problems.length) throw new ConfigError(problems);
  return { gateways };
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

function resolveGateway(gw: RawGateway, site: z.infer<typeof siteSchema>, at: string, problems: Problem[]): Gateway {
  const balance = { ...BALANCE_DEFAULTS, ...site.balance, ...gw.balance } as Balance;
  const health = { ...HEALTH_DEFAULTS, ...site.health, ...gw.health };
  const links = assignMarksAndTables(gw.links);
  const problem = (path: string, message: string) => problems.push({ path: `${at}.${path}`, message });

  if (!gw.connection.hostKey && !gw.connection.insecureSkipHostKeyCheck)
    problem("connection.hostKey", "is required to pin the gateway's SSH host key (ssh-keyscan -t ed25519 HOST), or set insecureSkipHostKeyCheck: true");
  for (const i of duplicates(links.map((l) => l.name))) problem(`links[${i}].name`, `duplicate link name "${links[i].name}"`);
  for (const i of duplicates(links.map((l) => l.interface)))
    problem(`links[${i}].interface`, `interface "${links[i].interface}" is already used by another link`);
  for (const i of duplicates(gw.links.map((l) => l.mark))) problem(`links[${i}].mark`, `duplicate mark ${gw.links[i].mark}`);
  for (const i of duplicates(gw.links.map((l) => l.table))) problem(`links[${i}].table`, `duplicate table ${gw.links[i].table}`);
  for (const i of duplicates(gw.lan.interfaces)) problem(`lan.interfaces[${i}]`, "duplicate LAN interface");
  gw.lan.interfaces.forEach((ifname, i) => {
    if (links.some((l) => l.interface === ifname)) problem(`lan.interfaces[${i}]`, `"${ifname}" is also a link interface`);
  });

  links.forEach((link, i) => {
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
      const lan = value && gw.lan.networks.find((n) => inSubnet(parseIpv4(value), parseCidr(n)));
      if (lan) problem(`links[${i}].${field}`, `${value} is inside LAN network ${lan}`);
    }
    if (link.check.reliability > link.check.targets.length)
      problem(`links[${i}].check.reliability`, `is ${link.check.reliability} but only ${link.check.targets.length} target(s) are listed`);
  });

  if (balance.ports && balance.protocols?.some((p) => p !== "tcp" && p !== "udp" && p !== "sctp"))
    problem("balance.ports", "ports apply only to tcp, udp and sctp: remove the other protocols or the ports");
  if (health.timeout > health.interval * health.down)
    problem("health.timeout", `must not exceed interval × down (${health.interval * health.down} s)`);

  const variantRules = variantRuleCount(links.map((l) => l.weight));
  if (variantRules > MAX_VARIANT_RULES)
    problem("links", `the ${links.length} links' failover variants would need ${variantRules} rules (max ${MAX_VARIANT_RULES}): use fewer links or smaller weights`);

  return { ...gw, links, balance, health };
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

/** Rules over all live-link subsets: each subset's split has one rule per weight unit (after gcd). */
export function variantRuleCount(weights: number[]): number {
  let total = 0;
  for (let mask = 1; mask < 1 << weights.length; mask++) {
    const live = weights.filter((_, i) => mask & (1 << i));
    const g = live.reduce(gcd);
    total += live.reduce((a, b) => a + b, 0) / g;
  }
  return total;
}

export function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
