import { describe, expect, it } from "vitest";
import { MAX_LINK_NAMES_LENGTH, MAX_LINKS, parseSite } from "../../components/config";
import { planGateway } from "../../components/plan";
import { renderBundle } from "../../components/render";
import { ROOT_PATTERN } from "../../components/root-path";
import { tarFiles } from "../../components/tar";
import { gateway, problemsOf, validSite } from "./fixtures";

const gw = (s: any) => s.gateways[0];
const link = (s: any, i: number) => s.gateways[0].links[i];
/** `n` links like the fixture's second, named and on interfaces of their own. */
const links = (s: any, n: number, name = (i: number) => `l${i}`) =>
  Array.from({ length: n }, (_, i) => ({ ...link(s, 1), name: name(i), interface: `w${i}` }));
/** A policy pinning SIP to isp2, with `over` changed (a key set to undefined is left out). */
const policy = (over: Record<string, unknown> = {}) =>
  JSON.parse(JSON.stringify({ name: "voip", match: { protocols: ["udp"], ports: [5060] }, links: ["isp2"], ...over }));
/** A link name of `length` characters, distinct per `i`. */
const longName = (i: number, length = 15) => `${String.fromCharCode(97 + i)}${"x".repeat(length - 1)}`;

// Each case: what is wrong, the field path the error must name, and a word of the reason.
const badConfigs: [string, (s: any) => void, string, RegExp][] = [
  ["no gateways", (s) => (s.gateways = []), "gateways", /at least one gateway/],
  ["unknown top-level key", (s) => (s.gatways = []), "gatways", /unknown key/],
  ["unknown gateway key", (s) => (gw(s).lnks = []), "gateways[0].lnks", /unknown key/],
  ["unknown link key", (s) => (link(s, 0).wieght = 2), "gateways[0].links[0].wieght", /unknown key/],
  ["gateway name with a space", (s) => (gw(s).name = "gw 1"), "gateways[0].name", /a-z/],
  ["gateway name with shell", (s) => (gw(s).name = "gw;reboot"), "gateways[0].name", /a-z/],
  ["duplicate gateway name", (s) => s.gateways.push(structuredClone(gw(s))), "gateways[1].name", /duplicate gateway name/],
  ["missing connection", (s) => delete gw(s).connection, "gateways[0].connection", /expected object/],
  ["host with shell", (s) => (gw(s).connection.host = "gw1;id"), "gateways[0].connection.host", /IPv4 or IPv6 address or a DNS name/],
  ["port 0", (s) => (gw(s).connection.port = 0), "gateways[0].connection.port", /too small|>=/],
  ["port too big", (s) => (gw(s).connection.port = 70000), "gateways[0].connection.port", /too big|<=/],
  ["bad user", (s) => (gw(s).connection.user = "root -oProxyCommand=x"), "gateways[0].connection.user", /Unix user/],
  ["bad host key", (s) => (gw(s).connection.hostKey = "not a key"), "gateways[0].connection.hostKey", /OpenSSH public host key/],
  ["no pinned host key", (s) => delete gw(s).connection.hostKey, "gateways[0].connection.hostKey", /required to pin/],
  ["rollback too soon", (s) => (gw(s).connection.rollbackAfter = 1), "gateways[0].connection.rollbackAfter", />=5/],
  ["relative root", (s) => (gw(s).root = "srv/gw"), "gateways[0].root", /absolute path/],
  ["root with ..", (s) => (gw(s).root = "/srv/../etc"), "gateways[0].root", /'\.\.'/],
  ["root with a space", (s) => (gw(s).root = "/srv/my gw"), "gateways[0].root", /absolute path/],
  ["root with //", (s) => (gw(s).root = "/srv//gw"), "gateways[0].root", /absolute path/],
  ["root too long", (s) => (gw(s).root = `/${"a".repeat(200)}`), "gateways[0].root", /at most 200 characters/],
  ["lo as a LAN interface", (s) => (gw(s).lan.interfaces = ["lo"]), "gateways[0].lan.interfaces[0]", /must not be lo: the loopback interface/],
  ["lo as an uplink", (s) => (link(s, 1).interface = "lo"), "gateways[0].links[1].interface", /must not be lo: the loopback interface/],
  ["LAN network 0.0.0.0/0", (s) => (gw(s).lan.networks = ["0.0.0.0/0"]), "gateways[0].lan.networks[0]", /must not be 0\.0\.0\.0\/0: every destination would count as LAN/],
  ["LAN network on loopback", (s) => (gw(s).lan.networks = ["127.0.0.0/8"]), "gateways[0].lan.networks[0]", /overlaps loopback \(127\.0\.0\.0\/8\)/],
  ["LAN network covering multicast", (s) => (gw(s).lan.networks = ["192.0.0.0/2"]), "gateways[0].lan.networks[0]", /overlaps multicast \(224\.0\.0\.0\/4\)/],
  ["link address 0.0.0.0", (s) => (link(s, 0).address = "0.0.0.0"), "gateways[0].links[0].address", /unicast host address: 0\.0\.0\.0 is the unspecified address/],
  ["link address in 0.0.0.0/8", (s) => (link(s, 0).address = "0.1.2.3/30"), "gateways[0].links[0].address", /0\.1\.2\.3 is "this network"/],
  ["link address loopback", (s) => (link(s, 0).address = "127.0.0.1"), "gateways[0].links[0].address", /127\.0\.0\.1 is loopback/],
  ["link address multicast", (s) => (link(s, 0).address = "224.0.0.5"), "gateways[0].links[0].address", /224\.0\.0\.5 is multicast/],
  ["link address broadcast", (s) => (link(s, 0).address = "255.255.255.255"), "gateways[0].links[0].address", /255\.255\.255\.255 is the broadcast address/],
  ["link address reserved", (s) => (link(s, 0).address = "240.0.0.1"), "gateways[0].links[0].address", /240\.0\.0\.1 is reserved/],
  ["link gateway loopback", (s) => (link(s, 1).gateway = "127.0.0.1"), "gateways[0].links[1].gateway", /127\.0\.0\.1 is loopback/],
  ["probe target broadcast", (s) => (link(s, 1).check.targets = ["255.255.255.255"]), "gateways[0].links[1].check.targets[0]", /is the broadcast address/],
  ["one address on two links", (s) => (link(s, 1).address = "203.0.113.2"), "gateways[0].links[1].address", /203\.0\.113\.2 is also the address of link isp1/],
  ["probe target is the link's own address", (s) => (link(s, 0).check.targets = ["203.0.113.2"]), "gateways[0].links[0].check.targets[0]",
    /203\.0\.113\.2 is the link's own address: the gateway answers it itself/],
  ["probe target is another link's address", (s) => (link(s, 1).check.targets = ["192.0.2.1", "203.0.113.2"]), "gateways[0].links[1].check.targets[1]",
    /is the address of link isp1: the gateway answers it itself/],
  ["probe target in the LAN", (s) => (link(s, 1).check.targets = ["198.18.1.1"]), "gateways[0].links[1].check.targets[0]", /inside LAN network 198\.18\.1\.0\/24: the probe would go to the LAN/],
  ["no LAN interfaces", (s) => (gw(s).lan.interfaces = []), "gateways[0].lan.interfaces", /too small|>=/],
  ["LAN interface with option", (s) => (gw(s).lan.interfaces = ["-j"]), "gateways[0].lan.interfaces[0]", /interface name/],
  ["LAN interface too long", (s) => (gw(s).lan.interfaces = ["abcdefghijklmnop"]), "gateways[0].lan.interfaces[0]", /interface name/],
  ["LAN interface wildcard", (s) => (gw(s).lan.interfaces = ["eth+"]), "gateways[0].lan.interfaces[0]", /interface name/],
  ["duplicate LAN interface", (s) => (gw(s).lan.interfaces = ["lan0", "lan0"]), "gateways[0].lan.interfaces[1]", /duplicate/],
  ["LAN network not CIDR", (s) => (gw(s).lan.networks = ["198.18.1.0"]), "gateways[0].lan.networks[0]", /CIDR/],
  ["LAN network with host bits", (s) => (gw(s).lan.networks = ["198.18.1.1/24"]), "gateways[0].lan.networks[0]", /host bits/],
  ["LAN network prefix 33", (s) => (gw(s).lan.networks = ["198.18.1.0/33"]), "gateways[0].lan.networks[0]", /CIDR/],
  ["one link", (s) => gw(s).links.pop(), "gateways[0].links", /needs 2 to 12 links/],
  ["thirteen links", (s) => (gw(s).links = links(s, 13)), "gateways[0].links", /^needs 2 to 12 links \(the failover variants of 13 exceed the budget of 25000 rules\)$/],
  ["link names too long for a tar name", (s) => (gw(s).links = links(s, 6, (i) => longName(i))), "gateways[0].links",
    /variants\/axxxxxxxxxxxxxx\+.*\.rules would be 110 bytes, over the 100-byte limit of a tar entry name: shorten them to at most 85 characters/],
  ["link name uppercase", (s) => (link(s, 0).name = "ISP1"), "gateways[0].links[0].name", /a-z/],
  ["duplicate link name", (s) => (link(s, 1).name = "isp1"), "gateways[0].links[1].name", /duplicate link name/],
  ["link interface with space", (s) => (link(s, 0).interface = "wan 1"), "gateways[0].links[0].interface", /interface name/],
  ["link interface with slash", (s) => (link(s, 0).interface = "wan/1"), "gateways[0].links[0].interface", /interface name/],
  ["two links on one interface", (s) => (link(s, 1).interface = "wan1"), "gateways[0].links[1].interface", /already used/],
  ["link interface is the LAN", (s) => (link(s, 1).interface = "lan0"), "gateways[0].lan.interfaces[0]", /also a link interface/],
  ["weight 0", (s) => (link(s, 0).weight = 0), "gateways[0].links[0].weight", /too small|>=/],
  ["weight 1.5", (s) => (link(s, 0).weight = 1.5), "gateways[0].links[0].weight", /expected int/],
  ["weight as text", (s) => (link(s, 0).weight = "3"), "gateways[0].links[0].weight", /expected number/],
  ["weight negative", (s) => (link(s, 1).weight = -1), "gateways[0].links[1].weight", /too small|>=/],
  ["mark 0", (s) => (link(s, 0).mark = 0), "gateways[0].links[0].mark", /too small|>=/],
  ["mark 256", (s) => (link(s, 0).mark = 256), "gateways[0].links[0].mark", /too big|<=/],
  ["duplicate mark", (s) => ((link(s, 0).mark = 5), (link(s, 1).mark = 5)), "gateways[0].links[1].mark", /duplicate mark/],
  ["table 254", (s) => (link(s, 0).table = 254), "gateways[0].links[0].table", /reserved/],
  ["table 253", (s) => (link(s, 0).table = 253), "gateways[0].links[0].table", /reserved/],
  ["table 255", (s) => (link(s, 0).table = 255), "gateways[0].links[0].table", /reserved/],
  ["table 0", (s) => (link(s, 0).table = 0), "gateways[0].links[0].table", /too small|>=/],
  ["duplicate table", (s) => ((link(s, 0).table = 7), (link(s, 1).table = 7)), "gateways[0].links[1].table", /duplicate table/],
  ["gateway not an address", (s) => (link(s, 0).gateway = "203.0.113.300"), "gateways[0].links[0].gateway", /IPv4 address/],
  ["address not an address", (s) => (link(s, 0).address = "203.0.113"), "gateways[0].links[0].address", /IPv4 address/],
  ["address with option", (s) => (link(s, 0).address = "203.0.113.2 --to-ports 1"), "gateways[0].links[0].address", /IPv4 address/],
  ["gateway equals address", (s) => (link(s, 0).gateway = "203.0.113.2"), "gateways[0].links[0].gateway", /must differ/],
  ["gateway off the link subnet", (s) => (link(s, 0).gateway = "203.0.113.9"), "gateways[0].links[0].gateway", /not on the link's subnet 203.0.113.0\/30/],
  ["address is the subnet's network", (s) => ((link(s, 0).address = "203.0.113.0/30"), (link(s, 0).gateway = "203.0.113.1")), "gateways[0].links[0].address", /network or broadcast/],
  ["address inside the LAN", (s) => ((link(s, 0).address = "198.18.1.7"), delete link(s, 0).gateway), "gateways[0].links[0].address", /inside LAN network/],
  ["no check", (s) => delete link(s, 0).check, "gateways[0].links[0].check", /expected object/],
  ["no probe targets", (s) => (link(s, 0).check.targets = []), "gateways[0].links[0].check.targets", /at least one probe target/],
  ["bad probe target", (s) => (link(s, 0).check.targets = ["example.com"]), "gateways[0].links[0].check.targets[0]", /IPv4 address/],
  ["reliability above targets", (s) => (link(s, 0).check.reliability = 2), "gateways[0].links[0].check.reliability", /only 1 target/],
  ["exclude not CIDR", (s) => (s.balance = { exclude: ["10.0.0.0/8 -j ACCEPT"] }), "balance.exclude[0]", /CIDR/],
  ["unknown protocol", (s) => (gw(s).balance = { protocols: ["gre"] }), "gateways[0].balance.protocols[0]", /tcp|udp/],
  ["balance port 0", (s) => (gw(s).balance = { ports: [0] }), "gateways[0].balance.ports[0]", />=1/],
  ["balance port as a word", (s) => (gw(s).balance = { ports: ["http"] }), "gateways[0].balance.ports[0]", /port 1-65535/],
  ["reversed port range", (s) => (gw(s).balance = { ports: ["90-80"] }), "gateways[0].balance.ports[0]", /low-high/],
  ["ports with icmp", (s) => (gw(s).balance = { protocols: ["icmp"], ports: [80] }), "gateways[0].balance.ports", /only to tcp, udp and sctp/],
  ["unknown balance key", (s) => (s.balance = { sticky: true }), "balance.sticky", /unknown key/],
  ["bad last resort", (s) => (s.balance = { lastResort: "drop" }), "balance.lastResort", /all|main/],
  ["health interval 0", (s) => (s.health = { interval: 0 }), "health.interval", /too small|>=/],
  ["health down 0", (s) => (gw(s).health = { down: 0 }), "gateways[0].health.down", /too small|>=/],
  ["health up 0.5", (s) => (gw(s).health = { up: 0.5 }), "gateways[0].health.up", /expected int/],
  ["health timeout too long", (s) => (gw(s).health = { interval: 0.5, down: 2, timeout: 5 }), "gateways[0].health.timeout", /interval × down/],
  ["hook timeout 0", (s) => (gw(s).health = { hookTimeout: 0 }), "gateways[0].health.hookTimeout", /too small|>=/],
  ["flushConntrack as text", (s) => (s.health = { flushConntrack: "yes" }), "health.flushConntrack", /expected boolean/],
  ["quality without limits", (s) => (s.health = { quality: { window: 5, flushConntrack: true } }), "health.quality", /needs `latencyMs` or `lossPercent`/],
  ["a link's quality without limits", (s) => (link(s, 1).quality = { recoverLatencyMs: 100 }), "gateways[0].links[1].quality", /needs `latencyMs` or `lossPercent`/],
  ["recovery latency above the limit", (s) => (s.health = { quality: { latencyMs: 200, recoverLatencyMs: 201 } }), "health.quality.recoverLatencyMs",
    /must not exceed `latencyMs` \(200\)/],
  ["recovery loss above the limit", (s) => (gw(s).health = { quality: { lossPercent: 10, recoverLossPercent: 10.5 } }), "gateways[0].health.quality.recoverLossPercent",
    /must not exceed `lossPercent` \(10\)/],
  ["recovery loss without a loss limit", (s) => (s.health = { quality: { latencyMs: 200, recoverLossPercent: 5 } }), "health.quality.recoverLossPercent", /needs `lossPercent`/],
  ["quality window 1", (s) => (s.health = { quality: { latencyMs: 200, window: 1 } }), "health.quality.window", /too small|>=2/],
  ["quality window 101", (s) => (link(s, 0).quality = { lossPercent: 20, window: 101 }), "gateways[0].links[0].quality.window", /too big|<=100/],
  ["loss over 100 %", (s) => (s.health = { quality: { lossPercent: 101 } }), "health.quality.lossPercent", /too big|<=100/],
  ["latency 0", (s) => (s.health = { quality: { latencyMs: 0 } }), "health.quality.latencyMs", /too small|>=1/],
  ["relative metrics file", (s) => (s.health = { metricsFile: "var/lib/multiwan.prom" }), "health.metricsFile", /absolute path/],
  ["metrics file with ..", (s) => (gw(s).health = { metricsFile: "/var/lib/../../etc/cron.d/x.prom" }), "gateways[0].health.metricsFile", /'\.\.'/],
  ["metrics file not .prom", (s) => (s.health = { metricsFile: "/var/lib/prometheus/node-exporter/multiwan.txt" }), "health.metricsFile", /ending in \.prom/],
  ["metrics file with a space", (s) => (s.health = { metricsFile: "/var/lib/my metrics.prom" }), "health.metricsFile", /absolute path/],
  ["tier 0", (s) => (link(s, 0).tier = 0), "gateways[0].links[0].tier", /too small|>=/],
  ["tier 17", (s) => (link(s, 1).tier = 17), "gateways[0].links[1].tier", /too big|<=/],
  ["tier 1.5", (s) => (link(s, 1).tier = 1.5), "gateways[0].links[1].tier", /expected int/],
  ["failback later", (s) => (link(s, 1).failback = "later"), "gateways[0].links[1].failback", /"keep"\|"move"|keep.*move/],
  ["policy naming an unknown link", (s) => (gw(s).balance = { policies: [policy({ links: ["isp2", "isp9"] })] }), "gateways[0].balance.policies[0].links[1]",
    /unknown link "isp9" \(links: isp1, isp2\)/],
  ["duplicate policy name", (s) => (gw(s).balance = { policies: [policy(), policy({ match: { protocols: ["tcp"] } })] }), "gateways[0].balance.policies[1].name",
    /duplicate policy name "voip"/],
  ["whenDown without links", (s) => (gw(s).balance = { policies: [policy({ links: undefined, whenDown: "unreachable" })] }), "gateways[0].balance.policies[0].whenDown",
    /needs `links`/],
  ["policy with no members", (s) => (gw(s).balance = { policies: [policy({ links: [] })] }), "gateways[0].balance.policies[0].links", /needs at least one member/],
  ["policy member listed twice", (s) => (gw(s).balance = { policies: [policy({ links: ["isp1", "isp2", { link: "isp1", weight: 2 }] })] }),
    "gateways[0].balance.policies[0].links[2]", /already a member/],
  ["policy member of another shape", (s) => (gw(s).balance = { policies: [policy({ links: [{ name: "isp1" }] })] }), "gateways[0].balance.policies[0].links[0]",
    /link name or \{ link, weight\?, tier\? \}/],
  ["policy member tier 0", (s) => (gw(s).balance = { policies: [policy({ links: [{ link: "isp1", tier: 0 }] })] }), "gateways[0].balance.policies[0].links[0].tier", /too small|>=/],
  ["policy member tier 17", (s) => (gw(s).balance = { policies: [policy({ links: ["isp1", { link: "isp2", tier: 17 }] })] }),
    "gateways[0].balance.policies[0].links[1].tier", /too big|<=/],
  ["policy member weight 0", (s) => (gw(s).balance = { policies: [policy({ links: [{ link: "isp1", weight: 0 }] })] }), "gateways[0].balance.policies[0].links[0].weight", /too small|>=/],
  ["policy on an interface that is no LAN", (s) => (gw(s).balance = { policies: [policy({ match: { lanInterfaces: ["lan0", "wan1"] } })] }),
    "gateways[0].balance.policies[0].match.lanInterfaces[1]", /"wan1" is not a LAN interface \(lan.interfaces: lan0\)/],
  ["policy ports with icmp", (s) => (gw(s).balance = { policies: [policy({ match: { protocols: ["udp", "icmp"], ports: [5060] } })] }),
    "gateways[0].balance.policies[0].match.ports", /only to tcp, udp and sctp/],
  ["policy source not a network", (s) => (gw(s).balance = { policies: [policy({ match: { sources: ["198.18.1.7/24"] } })] }), "gateways[0].balance.policies[0].match.sources[0]", /host bits/],
  ["unknown policy match key", (s) => (gw(s).balance = { policies: [policy({ match: { port: [5060] } })] }), "gateways[0].balance.policies[0].match.port", /unknown key/],
  ["policy sticky always", (s) => (gw(s).balance = { policies: [policy({ sticky: "always" })] }), "gateways[0].balance.policies[0].sticky", /"connection"\|"source"|connection.*source/],
  ["policy without a name", (s) => (gw(s).balance = { policies: [policy({ name: undefined })] }), "gateways[0].balance.policies[0].name", /expected string/],
  ["too many variant rules", (s) => (gw(s).links = Array.from({ length: 12 }, (_, i) => ({ ...link(s, 1), name: `l${i}`, interface: `w${i}`, weight: 7 + i }))), "gateways[0].links", /failover variants would need/],
];

describe("config schema rejects bad input, naming the field", () => {
  it("has at least 40 cases", () => expect(badConfigs.length).toBeGreaterThanOrEqual(40));

  it.each(badConfigs)("%s", (_, edit, path, reason) => {
    const problems = problemsOf(edit);
    const hit = problems.find((p) => p.path === path);
    expect(hit, `expected a problem at ${path}, got ${JSON.stringify(problems)}`).toBeDefined();
    expect(hit!.message).toMatch(reason);
  });

  it("reports every problem at once", () => {
    const problems = problemsOf((s) => {
      link(s, 0).weight = 0;
      link(s, 1).interface = "bad name";
      gw(s).lan.networks = ["198.18.1.1/24"];
    });
    expect(problems.map((p) => p.path).sort()).toEqual([
      "gateways[0].lan.networks[0]",
      "gateways[0].links[0].weight",
      "gateways[0].links[1].interface",
    ]);
  });

  it("prints one line per problem with its path", () => {
    const site = validSite();
    link(site, 0).weight = 0;
    expect(() => parseSite(site)).toThrow(/invalid multiwan config \(1 problem\):\n  gateways\[0\]\.links\[0\]\.weight: /);
  });
});

describe("the root path check", () => {
  it("takes linear time on input that made the old pattern backtrack exponentially", () => {
    // The old `^\/([A-Za-z0-9._-]+\/?)*$` took 72 s on 31 characters, doubling per character.
    const adversarial = [31, 100_000].flatMap((n) => [`/${"a".repeat(n)}!`, `/${"a/".repeat(n)}/`, `/${"-".repeat(n)}\n`]);
    const started = performance.now();
    for (const root of adversarial) {
      expect(ROOT_PATTERN.test(root)).toBe(false);
      expect(new Set(problemsOf((s) => (gw(s).root = root)).map((p) => p.path))).toEqual(new Set(["gateways[0].root"]));
    }
    expect(performance.now() - started).toBeLessThan(500);
  });

  it("accepts what the old pattern accepted", () => {
    for (const root of ["/", "/srv", "/srv/", "/srv/gw1.d/a_b-c", "/srv/gw1/"]) expect(gateway((s) => (gw(s).root = root)).root).toBe(root);
  });
});

describe("the link and file-name budgets", () => {
  it(`accepts ${MAX_LINKS} links of weight 1, the most the rule budget holds`, () => {
    expect(MAX_LINKS).toBe(12);
    expect(gateway((s) => (gw(s).links = links(s, 12).map((l) => ({ ...l, weight: 1 })))).links).toHaveLength(12);
  });

  it("accepts link names that just fit, and their bundle goes into a tar", () => {
    // 5 × 15 + 5 + 5 "+" = 85 characters: `variants/<all>.rules` is exactly 100 bytes.
    const names = (i: number) => longName(i, i < 5 ? 15 : 5);
    const g = gateway((s) => (gw(s).links = links(s, 6, names)));
    expect(g.links.map((l) => l.name).join("+")).toHaveLength(MAX_LINK_NAMES_LENGTH);
    expect(() => tarFiles(renderBundle(planGateway(g)))).not.toThrow();
    const over = (i: number) => longName(i, i < 5 ? 15 : 6);
    expect(problemsOf((s) => (gw(s).links = links(s, 6, over))).map((p) => p.path)).toEqual(["gateways[0].links"]);
  });
});

describe("policies of the site and of a gateway", () => {
  /** validSite with a second gateway whose links are isp1 and lte (no isp2). */
  const twoGateways = (s: any) => {
    const gw2 = structuredClone(gw(s));
    gw2.name = "gw2";
    gw2.links[1].name = "lte";
    s.gateways.push(gw2);
  };

  it("checks a site-level policy on every gateway that uses it, naming the gateway that lacks a member", () => {
    const problems = problemsOf((s) => {
      twoGateways(s);
      s.balance = { policies: [policy()] };
    });
    expect(problems).toEqual([{ path: "balance.policies[0].links[0]", message: 'unknown link "isp2" (links: isp1, lte) (on gateway gw2)' }]);
  });

  it("a gateway's own list replaces the site's, and is reported under the gateway", () => {
    expect(problemsOf((s) => {
      twoGateways(s);
      s.balance = { policies: [policy()] };
      s.gateways[1].balance = { policies: [policy({ links: ["lte"] })] };
    })).toEqual([]);
    const site = validSite();
    twoGateways(site);
    site.balance = { policies: [policy()] };
    site.gateways[1].balance = { policies: [] };
    const [gw1, gw2] = parseSite(site).gateways;
    expect(gw1.balance.policies.map((p) => p.name)).toEqual(["voip"]);
    expect(gw2.balance.policies).toEqual([]);
    expect(problemsOf((s) => {
      twoGateways(s);
      s.gateways[1].balance = { policies: [policy()] };
    })).toEqual([{ path: "gateways[1].balance.policies[0].links[0]", message: 'unknown link "isp2" (links: isp1, lte)' }]);
  });

  it("resolves members to their weight and tier, the link's own unless given, and fills the defaults", () => {
    const g = gateway((s) => {
      link(s, 1).tier = 2;
      gw(s).balance = { policies: [policy({ links: ["isp2", { link: "isp1", weight: 5 }, ] }), policy({ name: "web", match: { ports: [443] }, links: undefined })] };
    });
    expect(g.balance.policies).toEqual([
      { name: "voip", match: { protocols: ["udp"], ports: [5060] }, members: [{ link: "isp2", weight: 1, tier: 2 }, { link: "isp1", weight: 5, tier: 1 }], sticky: "connection", whenDown: "default" },
      { name: "web", match: { ports: [443] }, sticky: "connection", whenDown: "default" },
    ]);
  });

  it("refuses policies whose splits push the failover variants over the rule budget, naming the policy", () => {
    const tenLinks = (s: any) => (gw(s).links = links(s, 10).map((l) => ({ ...l, weight: 1 })));
    // Ten links alone fit, and so does a policy balancing per connection over all of them.
    expect(problemsOf((s) => (tenLinks(s), (gw(s).balance = { policies: [policy({ links: undefined, match: { ports: [443] } })] })))).toEqual([]);
    // Sticky by source over ten links: a mask per address range of each link, in each of the 1023 variants.
    const problems = problemsOf((s) => {
      tenLinks(s);
      gw(s).balance = { policies: [policy({ links: undefined, match: { ports: [443] } }), policy({ name: "by-source", links: undefined, match: {}, sticky: "source" })] };
    });
    expect(problems).toEqual([{ path: "gateways[0].balance.policies[1]", message: expect.stringMatching(/^its rules in the failover variants take them past 25000 rules: give it fewer members/) }]);
  });

  // 12 links of weight 1 fit alone (24576 rules): the policy is what pushes them over.
  it("names the policy when the links alone fit the rule budget", () => {
    const problems = problemsOf((s) => {
      gw(s).links = links(s, 12).map((l) => ({ ...l, weight: 1 }));
      gw(s).balance = { policies: [policy({ links: ["l0", "l1"], match: { ports: [443] } })] };
    });
    expect(problems.map((p) => p.path)).toEqual(["gateways[0].balance.policies[0]"]);
  });
});

describe("config defaults", () => {
  it("fills every default", () => {
    const g = gateway();
    expect(g.connection).toMatchObject({ host: "192.0.2.50", port: 22, user: "root", insecureSkipHostKeyCheck: false, rollbackAfter: 60 });
    expect(g.root).toBe("/");
    expect(g.links.map((l) => [l.mark, l.table])).toEqual([[1, 101], [2, 102]]);
    expect(g.links[1].check.reliability).toBe(1);
    expect(g.links.map((l) => [l.tier, l.failback])).toEqual([[1, "keep"], [1, "keep"]]);
    expect(g.balance).toEqual({ exclude: [], exclude6: [], local: false, inboundSticky: true, lastResort: "all", policies: [] });
    expect(g.health).toEqual({
      interval: 0.5, timeout: 1, down: 3, up: 5, flushConntrack: true, hookTimeout: 10,
      metricsFile: "/var/lib/prometheus/node-exporter/multiwan.prom", // Debian's node_exporter textfile directory
      passive: true, // on: new connections unanswered on one link trigger a confirm burst
    });
    expect(g.health.quality).toBeUndefined(); // off unless asked for
    expect(g.links.map((l) => l.quality)).toEqual([undefined, undefined]);
  });

  it("skips explicit marks and tables when assigning defaults", () => {
    const g = gateway((s) => ((link(s, 1).mark = 1), (link(s, 1).table = 101)));
    expect(g.links.map((l) => [l.mark, l.table])).toEqual([[2, 102], [1, 101]]);
  });

  it("merges site-level balance and health under gateway overrides", () => {
    const g = gateway((s) => {
      s.balance = { exclude: ["192.0.2.0/24"], local: true };
      s.health = { interval: 1, down: 2 };
      gw(s).balance = { local: false };
      gw(s).health = { down: 4 };
    });
    expect(g.balance).toMatchObject({ exclude: ["192.0.2.0/24"], local: false });
    expect(g.health).toMatchObject({ interval: 1, down: 4 });
  });

  it("accepts no metrics file, or one elsewhere", () => {
    expect(gateway((s) => (s.health = { metricsFile: false })).health.metricsFile).toBe(false);
    expect(gateway((s) => (gw(s).health = { metricsFile: "/srv/metrics/gw1.prom" })).health.metricsFile).toBe("/srv/metrics/gw1.prom");
  });

  it("accepts a PPP link without gateway or address", () => {
    const g = gateway((s) => ((link(s, 1).interface = "ppp0"), delete link(s, 1).gateway));
    expect(g.links[1].gateway).toBeUndefined();
  });
});

describe("quality limits: the site's, a gateway's, a link's own", () => {
  const planned = (edit: (s: any) => void) => planGateway(gateway(edit)).links.map((l) => l.quality);
  const off = { window: 0, latencyUs: 0, lossPermille: -1, recoverLatencyUs: 0, recoverLossPermille: -1, flush: false };

  it("are off by default, in the daemon's integers (µs, ‰, -1: not checked)", () => expect(planned(() => {})).toEqual([off, off]));

  it("recover at 80 % of the latency and half the loss unless told, over 10 rounds", () => {
    expect(planned((s) => (s.health = { quality: { latencyMs: 333, lossPercent: 12.5 } }))).toEqual(Array(2).fill(
      { window: 10, latencyUs: 333_000, lossPermille: 125, recoverLatencyUs: 266_400, recoverLossPermille: 63, flush: false },
    ));
    // Recovery values equal to the limits are allowed: no hysteresis, asked for.
    expect(planned((s) => (s.health = { quality: { latencyMs: 200, recoverLatencyMs: 200, window: 2, flushConntrack: true } }))[0]).toEqual(
      { window: 2, latencyUs: 200_000, lossPermille: -1, recoverLatencyUs: 200_000, recoverLossPermille: -1, flush: true },
    );
  });

  it("a link's own quality replaces the site's whole, and a gateway's replaces the site's", () => {
    const [own, inherited] = planned((s) => {
      s.health = { quality: { latencyMs: 200, lossPercent: 20 } };
      link(s, 0).quality = { lossPercent: 5, window: 4 };
    });
    // No latency limit on isp1: its own limits say none, the site's 200 ms does not leak in.
    expect(own).toEqual({ window: 4, latencyUs: 0, lossPermille: 50, recoverLatencyUs: 0, recoverLossPermille: 25, flush: false });
    expect(inherited).toEqual({ window: 10, latencyUs: 200_000, lossPermille: 200, recoverLatencyUs: 160_000, recoverLossPermille: 100, flush: false });
    const g = gateway((s) => {
      s.health = { quality: { latencyMs: 200, lossPercent: 20 } };
      gw(s).health = { quality: { latencyMs: 900 } };
    });
    expect(g.health.quality).toEqual({ latencyMs: 900 });
  });
});
