// IPv6 next to IPv4: the config's family checks, and the plan and files of each family.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { canonical6, formatIpv6, parseCidr6, parseIpv6 } from "../../components/ipv6";
import { planGateway } from "../../components/plan";
import { renderBundle } from "../../components/render";
import { gateway, problemsOf as siteProblems } from "./fixtures";
import { healthFunctions } from "./health-sh";

const gw = (s: any) => s.gateways[0];
const link = (s: any, i: number) => s.gateways[0].links[i];

/** The fixture as a dual-stack gateway: isp1 maps the LAN onto its prefix (npt), isp2 masquerades. */
function dualStack(s: any): void {
  gw(s).lan.networks6 = ["2001:db8:10::/64"];
  Object.assign(link(s, 0), { gateway6: "fe80::1", address6: "2001:db8:1::2/64", prefix6: "2001:db8:a1:1::/64", nat6: "npt" });
  link(s, 0).check.targets6 = ["2001:db8:5e::1"];
  Object.assign(link(s, 1), { gateway6: "2001:db8:2::1", address6: "2001:db8:2::2/64" });
  link(s, 1).check.targets6 = ["2001:db8:5e::1"];
}
const dual = (edit: (s: any) => void = () => {}) => gateway((s) => (dualStack(s), edit(s)));

/** The dual-stack fixture's problems after `edit`. */
const problemsOf = (edit: (site: any) => void) => siteProblems((s) => (dualStack(s), edit(s)));

describe("IPv6 addresses", () => {
  it("prints them as the kernel's tools do (glibc's inet_ntop, RFC 5952), IPv4 tails dotted", () => {
    // What `python3 -c 'import socket; …inet_ntop(AF_INET6, inet_pton(AF_INET6, a))'` prints (glibc).
    const glibc: [string, string][] = [
      ["2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
      ["2001:0db8:0010:0000:0000:0000:0000:0010", "2001:db8:10::10"],
      ["::1", "::1"],
      ["::", "::"],
      ["fe80::", "fe80::"],
      ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
      ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
      ["::ffff:0:0", "::ffff:0.0.0.0"],
      ["::c000:200", "::192.0.2.0"],
      ["0:0:0:0:0:1:0:0", "::1:0:0"],
    ];
    for (const [input, printed] of glibc) expect(formatIpv6(parseIpv6(input)), input).toBe(printed);
  });

  it("reads networks with their bounds, and canonical text with the length ip6tables-save adds", () => {
    const s = parseCidr6("2001:db8:10::/64");
    expect([formatIpv6(s.network), formatIpv6(s.last), s.prefix]).toEqual(["2001:db8:10::", "2001:db8:10:0:ffff:ffff:ffff:ffff", 64]);
    expect(canonical6("2001:DB8:10:0::10")).toBe("2001:db8:10::10/128");
  });
});

// Each case: what is wrong, the field path the error must name, and a word of the reason.
const badConfigs: [string, (s: any) => void, string, RegExp][] = [
  ["IPv6 next hop in gateway", (s) => (link(s, 1).gateway = "2001:db8:2::1"), "gateways[0].links[1].gateway", /is IPv6: an IPv6 value goes in `gateway6`/],
  ["IPv4 next hop in gateway6", (s) => (link(s, 1).gateway6 = "198.51.100.5"), "gateways[0].links[1].gateway6", /is IPv4: an IPv4 value goes in `gateway`/],
  ["IPv6 address in address", (s) => (link(s, 0).address = "2001:db8:1::2/64"), "gateways[0].links[0].address", /goes in `address6`/],
  ["IPv4 address in address6", (s) => (link(s, 0).address6 = "203.0.113.2/30"), "gateways[0].links[0].address6", /goes in `address`/],
  ["IPv6 target in targets", (s) => (link(s, 0).check.targets = ["2001:db8:5e::1"]), "gateways[0].links[0].check.targets[0]", /goes in `targets6`/],
  ["IPv4 target in targets6", (s) => (link(s, 0).check.targets6 = ["192.0.2.1"]), "gateways[0].links[0].check.targets6[0]", /goes in `targets`/],
  ["IPv6 LAN in networks", (s) => (gw(s).lan.networks = ["2001:db8:10::/64"]), "gateways[0].lan.networks[0]", /goes in `lan.networks6`/],
  ["IPv4 LAN in networks6", (s) => (gw(s).lan.networks6 = ["198.18.1.0/24"]), "gateways[0].lan.networks6[0]", /goes in `networks`/],
  ["IPv6 exclusion in exclude", (s) => (gw(s).balance = { exclude: ["2001:db8:99::/48"] }), "gateways[0].balance.exclude[0]", /goes in `exclude6`/],
  ["IPv4 exclusion in exclude6", (s) => (gw(s).balance = { exclude6: ["192.0.2.0/24"] }), "gateways[0].balance.exclude6[0]", /goes in `exclude`/],
  ["IPv6 policy source in sources", (s) => (gw(s).balance = { policies: [{ name: "p", match: { sources: ["2001:db8:10::/64"] } }] }), "gateways[0].balance.policies[0].match.sources[0]", /goes in `sources6`/],
  ["LAN prefix with host bits", (s) => (gw(s).lan.networks6 = ["2001:db8:10::1/64"]), "gateways[0].lan.networks6[0]", /host bits/],
  ["LAN prefix ::/0", (s) => (gw(s).lan.networks6 = ["::/0"]), "gateways[0].lan.networks6[0]", /must not be ::\/0/],
  ["link-local LAN", (s) => (gw(s).lan.networks6 = ["fe80::/64"]), "gateways[0].lan.networks6[0]", /link-local/],
  ["overlapping IPv6 LAN networks", (s) => (gw(s).lan.networks6 = ["2001:db8:10::/64", "2001:db8:10::/56"]), "gateways[0].lan.networks6[1]", /overlaps lan.networks6\[0\]/],
  ["exclusion overlapping the IPv6 LAN", (s) => (gw(s).balance = { exclude6: ["2001:db8:10::/48"] }), "gateways[0].balance.exclude6[0]", /overlaps LAN network 2001:db8:10::\/64/],
  ["multicast probe target", (s) => (link(s, 0).check.targets6 = ["ff02::1"]), "gateways[0].links[0].check.targets6[0]", /multicast/],
  ["link-local probe target", (s) => (link(s, 0).check.targets6 = ["fe80::1"]), "gateways[0].links[0].check.targets6[0]", /link-local/],
  ["probe target inside the LAN", (s) => (link(s, 0).check.targets6 = ["2001:db8:10::99"]), "gateways[0].links[0].check.targets6[0]", /inside LAN network/],
  ["probe target inside an npt prefix", (s) => (link(s, 1).check.targets6 = ["2001:db8:a1:1::1"]), "gateways[0].links[1].check.targets6[0]", /prefix6 of link isp1, which maps onto the LAN/],
  ["no IPv6 probe target on a dual-stack link", (s) => delete link(s, 1).check.targets6, "gateways[0].links[1].check.targets6", /needs IPv6 probe targets/],
  ["NPT between prefixes of different lengths", (s) => (link(s, 0).prefix6 = "2001:db8:a1::/56"), "gateways[0].links[0].prefix6", /is a \/56 but the LAN network it maps \(2001:db8:10::\/64\) is a \/64/],
  ["NPT with two LAN networks to map", (s) => (gw(s).lan.networks6 = ["2001:db8:10::/64", "2001:db8:11::/64"]), "gateways[0].links[0].nat6", /maps one LAN network onto prefix6, but lan.networks6 has 2/],
  ["NPT without a prefix", (s) => delete link(s, 0).prefix6, "gateways[0].links[0].prefix6", /needed for `nat6: npt`/],
  ["NPT onto the LAN's own prefix", (s) => (link(s, 0).prefix6 = "2001:db8:10::/64"), "gateways[0].links[0].prefix6", /overlaps LAN network/],
  ["a prefix with masquerade", (s) => (link(s, 1).prefix6 = "2001:db8:b2:2::/64"), "gateways[0].links[1].prefix6", /only with `nat6: npt` or `nat6: none`/],
  ["nat6 none with a prefix outside the LAN", (s) => Object.assign(link(s, 1), { nat6: "none", prefix6: "2001:db8:b2:2::/64" }), "gateways[0].links[1].prefix6", /must be one of lan.networks6/],
  ["two links with overlapping prefixes", (s) => Object.assign(link(s, 1), { nat6: "npt", prefix6: "2001:db8:a1::/48" }), "gateways[0].links[1].prefix6", /overlaps the prefix6 of link isp1/],
  ["gateway6 off the address6 subnet", (s) => (link(s, 1).gateway6 = "2001:db8:3::1"), "gateways[0].links[1].gateway6", /not on the link's subnet 2001:db8:2::2\/64/],
  ["two links with one address6", (s) => (link(s, 1).address6 = "2001:db8:1::2"), "gateways[0].links[1].address6", /also the address6 of link isp1/],
  ["IPv6 fields on an IPv4-only gateway", (s) => delete gw(s).lan.networks6, "gateways[0].links[0].gateway6", /routes no IPv6/],
  ["IPv4 fields on an IPv6-only gateway", (s) => delete gw(s).lan.networks, "gateways[0].links[0].gateway", /routes no IPv4/],
  ["no LAN network of either family", (s) => { delete gw(s).lan.networks; delete gw(s).lan.networks6; }, "gateways[0].lan.networks", /needs at least one LAN network/],
  ["no link carrying IPv6", (s) => { for (const l of gw(s).links) { for (const k of ["gateway6", "address6", "prefix6", "nat6"]) delete l[k]; delete l.check.targets6; } }, "gateways[0].lan.networks6", /no link carries IPv6/],
  ["IPv6 probes on a link without IPv6", (s) => { for (const k of ["gateway6", "address6"]) delete link(s, 1)[k]; }, "gateways[0].links[1].check.targets6", /the link carries no IPv6/],
  ["a link carrying nothing on an IPv6-only gateway", (s) => {
    delete gw(s).lan.networks;
    for (const l of gw(s).links) { delete l.gateway; delete l.address; delete l.check.targets; }
    for (const k of ["gateway6", "address6"]) delete link(s, 1)[k];
    delete link(s, 1).check.targets6;
  }, "gateways[0].links[1]", /carries nothing/],
  ["IPv6 exclusions on an IPv4-only gateway", (s) => { delete gw(s).lan.networks6; gw(s).balance = { exclude6: ["2001:db8:99::/48"] }; }, "gateways[0].balance.exclude6", /routes no IPv6.*would do nothing/],
  ["an IPv6-only policy on an IPv4-only gateway", (s) => { delete gw(s).lan.networks6; gw(s).balance = { policies: [{ name: "p", match: { destinations6: ["2001:db8:77::/48"] } }] }; }, "gateways[0].balance.policies[0].match", /IPv6 addresses only.*would take nothing/],
  ["a link-local next hop beyond fe80::/16 (fe80::/10) with a global address6", (s) => (link(s, 1).gateway6 = "febf::1"), "(accepted)", /./],
  ["reliability above a family's list", (s) => (link(s, 0).check.reliability = 2), "gateways[0].links[0].check.reliability", /check.targets lists only 1 target\(s\): it counts the answers of each family/],
];

describe("dual-stack config rejects bad input, naming the field", () => {
  it("accepts the dual-stack fixture", () => expect(problemsOf(() => {})).toEqual([]));

  it.each(badConfigs.filter((c) => c[2] !== "(accepted)"))("%s", (_, edit, path, reason) => {
    const problems = problemsOf(edit);
    const hit = problems.find((p) => p.path === path);
    expect(hit, `expected a problem at ${path}, got ${JSON.stringify(problems)}`).toBeDefined();
    expect(hit!.message).toMatch(reason);
  });

  it("takes an IPv6 SSH host, any link-local next hop, and site-wide lists of a family a gateway does not route", () => {
    expect(problemsOf((s) => (gw(s).connection.host = "2001:db8::50"))).toEqual([]);
    for (const [, edit] of badConfigs.filter((c) => c[2] === "(accepted)")) expect(problemsOf(edit)).toEqual([]);
    expect(problemsOf((s) => { delete gw(s).lan.networks6; for (const l of gw(s).links) { for (const k of ["gateway6", "address6", "prefix6", "nat6"]) delete l[k]; delete l.check.targets6; } s.balance = { exclude6: ["2001:db8:99::/48"] }; })).toEqual([]);
  });

  it("allows one character less of link names where the gateway routes IPv6 (`variants/<names>.rules6`)", () => {
    const named = (lengths: number[]) => (s: any) => {
      const { address6: _, ...template } = link(s, 1);
      gw(s).links = lengths.map((n, i) => ({ ...template, name: `${String.fromCharCode(97 + i)}${"x".repeat(n - 1)}`, interface: `w${i}` }));
    };
    expect(problemsOf(named([15, 15, 15, 15, 15, 4]))).toEqual([]); // 84 characters with the + signs
    expect(problemsOf(named([15, 15, 15, 15, 15, 5])).map((p) => p.message)).toEqual([expect.stringMatching(/\.rules6 would be 101 bytes.*at most 84 characters/)]);
  });
});

describe("the IPv6 plan", () => {
  const plan = planGateway(dual());
  const v6 = plan.families.find((f) => f.family === 6)!;
  const bundle = renderBundle(plan);

  it("has one family each, IPv4 first, sharing marks, tables and variant keys", () => {
    expect(plan.families.map((f) => [f.family, f.rulesFile, f.batchFile])).toEqual([[4, "iptables.rules", "ip.batch"], [6, "ip6tables.rules", "ip6.batch"]]);
    expect(v6.variants.map((v) => v.key)).toEqual(plan.variants.map((v) => v.key));
    expect(bundle["variants/isp1+isp2.rules6"]).toBe(bundle["variants/isp1+isp2.rules"]);
    expect(plan.sysctls.map((s) => s.key)).toContain("net.ipv6.conf.all.forwarding");
  });

  it("maps the LAN onto isp1's prefix both ways (npt) and masquerades on isp2 to its address6", () => {
    expect(v6.nat).toEqual([
      { match: "-s 2001:db8:10::/64 -o wan1", target: "NETMAP --to 2001:db8:a1:1::/64" },
      { match: "-s 2001:db8:10::/64 -o wan2", target: "SNAT --to-source 2001:db8:2::2" },
    ]);
    expect(v6.natPre).toEqual([{ match: "-d 2001:db8:a1:1::/64 -i wan1", target: "NETMAP --to 2001:db8:10::/64" }]);
    expect(bundle["ip6tables.hooks"]).toContain("nat\t-A PREROUTING -j MWAN-NATPRE\n");
    expect(bundle["iptables.hooks"]).not.toContain("MWAN-NATPRE");
  });

  it("routes each link's table over IPv6, its address and prefix looking it up", () => {
    expect(bundle["ip6.batch"].split("\n")).toEqual([
      "rule add pref 1000 lookup main suppress_prefixlength 0",
      "rule add pref 1100 from 2001:db8:1::2 lookup 101",
      "rule add pref 1100 from 2001:db8:a1:1::/64 lookup 101",
      "rule add pref 1101 from 2001:db8:2::2 lookup 102",
      "rule add pref 1200 fwmark 0x100/0xff00 lookup 101",
      "rule add pref 1201 fwmark 0x200/0xff00 lookup 102",
      "route replace default via fe80::1 dev wan1 table 101",
      "route replace default via 2001:db8:2::1 dev wan2 table 102",
      "",
    ]);
    expect(bundle["ip6.undo"]).toContain("route flush table 102\n");
    expect(v6.shown.routes).toEqual([
      { table: 101, route: "default via fe80::1 dev wan1 metric 1024 pref medium" },
      { table: 102, route: "default via 2001:db8:2::1 dev wan2 metric 1024 pref medium" },
    ]);
  });

  it("never balances the LAN, the exclusions, multicast or link-local destinations", () => {
    const p = planGateway(dual((s) => (gw(s).balance = { exclude6: ["2001:DB8:99::/48"] })));
    expect(p.families[1].bypass).toEqual(["2001:db8:10::/64", "2001:db8:99::/48", "ff00::/8", "fe80::/10"]);
  });

  it("pins a LAN network numbered from a provider (nat6 none) to that link, untranslated there, the other LAN masqueraded", () => {
    const p = planGateway(dual((s) => {
      gw(s).lan.networks6 = ["2001:db8:10::/64", "2001:db8:b2:2::/64"];
      Object.assign(link(s, 1), { nat6: "none", prefix6: "2001:db8:b2:2::/64" });
    }));
    const f = p.families[1];
    expect(f.classify[0]).toEqual({ match: "-s 2001:db8:b2:2::/64 ", target: "MWAN-MARK-2" });
    expect(f.nat).toEqual([
      { match: "-s 2001:db8:10::/64 -o wan1", target: "NETMAP --to 2001:db8:a1:1::/64" },
      { match: "-s 2001:db8:10::/64 -o wan2", target: "SNAT --to-source 2001:db8:2::2" },
    ]);
    expect(f.ipRules).toContain("rule add pref 1101 from 2001:db8:b2:2::/64 lookup 102");
  });

  it("takes a policy into the family its addresses are of, and ICMP as ipv6-icmp", () => {
    const p = planGateway(dual((s) => (gw(s).balance = {
      policies: [
        { name: "v4only", match: { sources: ["198.18.1.0/28"] }, links: ["isp1"] },
        { name: "v6only", match: { destinations6: ["2001:db8:77::/48"] }, links: ["isp2"] },
        { name: "ping", match: { protocols: ["icmp"] }, links: ["isp2"] },
      ],
    })));
    const classify = (i: number) => p.families[i].classify.map((c) => `${c.match}-g ${c.target}`);
    expect(classify(0)).toEqual(["-s 198.18.1.0/28 -g MWAN-BALANCE-P1", "-p icmp -g MWAN-BALANCE-P3", "-g MWAN-BALANCE"]);
    expect(classify(1)).toEqual(["-d 2001:db8:77::/48 -g MWAN-BALANCE-P2", "-p ipv6-icmp -g MWAN-BALANCE-P3", "-g MWAN-BALANCE"]);
  });

  it("matches a sticky policy's sources by their last bits in IPv6 too", () => {
    const b = renderBundle(planGateway(dual((s) => (gw(s).balance = { policies: [{ name: "logins", match: { protocols: ["tcp"] }, sticky: "source" }] }))));
    expect(b["variants/isp1+isp2.rules"]).toContain("-A MWAN-BALANCE-P1 -s 0.0.0.3/0.0.0.3 -g MWAN-MARK-2\n");
    expect(b["variants/isp1+isp2.rules6"]).toContain("-A MWAN-BALANCE-P1 -s ::3/::3 -g MWAN-MARK-2\n");
  });

  it("balances IPv6 over the links that carry it only (a backup line without IPv6), under every link's variant keys", () => {
    const p = planGateway(dual((s) => {
      for (const k of ["gateway6", "address6"]) delete link(s, 1)[k];
      delete link(s, 1).check.targets6;
    }));
    const [v4, v6] = p.families;
    expect(v6.variants.map((v) => v.key)).toEqual(v4.variants.map((v) => v.key));
    const rules = (v: typeof v6.variants[number]) => v.chains.flatMap((c) => c.rules.map((r) => `${c.name} ${r.match}${r.target}`));
    // Both live: IPv4 splits 3:1, IPv6 all to isp1; isp1 down: IPv6 has no live link (its `none`, the last resort: isp1).
    expect(rules(v4.variants.find((v) => v.key === "isp1+isp2")!)).toContain("MWAN-BALANCE -m statistic --mode nth --every 4 --packet 0 -g MWAN-MARK-2");
    expect(rules(v6.variants.find((v) => v.key === "isp1+isp2")!)).toEqual(["MWAN-BALANCE -j MARK --set-xmark 0x100/0xff00"]);
    expect(rules(v6.variants.find((v) => v.key === "isp2")!)).toEqual(["MWAN-BALANCE -j MARK --set-xmark 0x100/0xff00"]);
    expect(v6.nat.map((n) => n.match)).toEqual(["-s 2001:db8:10::/64 -o wan1"]);
    expect(v6.ipRoutes).toEqual(["route replace default via fe80::1 dev wan1 table 101"]);
    expect(renderBundle(p)["health.sh"]).toContain('targets="192.0.2.1" count4=1 need4=1 need6=0 need=1 route="default via 198.51.100.5 dev wan2 table 102" route6=""');

    // A policy pinned to the link without IPv6 takes no IPv6 connection (even one that refuses when its members are down).
    const pinned = planGateway(dual((s) => {
      for (const k of ["gateway6", "address6"]) delete link(s, 1)[k];
      delete link(s, 1).check.targets6;
      gw(s).balance = { policies: [{ name: "voip", match: { protocols: ["udp"], ports: [5060] }, links: ["isp2"], whenDown: "unreachable" }] };
    }));
    expect(pinned.families.map((f) => f.classify.map((c) => c.target))).toEqual([["MWAN-BALANCE-P1", "MWAN-BALANCE"], ["MWAN-BALANCE"]]);
  });

  it("hooks the inbound prefix mapping's chain in every IPv6 bundle, empty without npt, so leaving npt unhooks nothing", () => {
    const b = renderBundle(planGateway(dual((s) => Object.assign(link(s, 0), { nat6: "masquerade", prefix6: undefined }))));
    expect(b["ip6tables.hooks"]).toContain("nat\t-A PREROUTING -j MWAN-NATPRE\n");
    expect(b["ip6tables.rules"]).toContain(":MWAN-NATPRE - [0:0]\n");
    expect(b["ip6tables.rules"]).not.toContain("-A MWAN-NATPRE");
  });

  it("an IPv6-only gateway has no IPv4 files, routes or sysctls", () => {
    const p = planGateway(dual((s) => {
      delete gw(s).lan.networks;
      for (const l of gw(s).links) { delete l.gateway; delete l.address; delete l.check.targets; }
    }));
    const b = renderBundle(p);
    expect(p.families.map((f) => f.family)).toEqual([6]);
    expect(Object.keys(b).filter((f) => /^(ip|iptables)\.|^variants\/.*\.rules$/.test(f))).toEqual([]);
    expect(p.sysctls).toEqual([{ key: "net.ipv6.conf.all.forwarding", value: "1" }]);
    expect(b["health.sh"]).toContain('route="" route6="default via fe80::1 dev wan1 table 101"');
    expect(b["health.sh"]).toContain('targets="2001:db8:5e::1"');
  });
});

describe("probing a dual-stack link", () => {
  /** isp1's status after 3 probe rounds (down after 3 failed) with a ping that answers `answers`, and its first round's file. */
  function afterRounds(answers: "both" | "ipv4"): string[] {
    const dir = mkdtempSync(join(tmpdir(), "mwt-dual-"));
    try {
      writeFileSync(join(dir, "ping"), `#!/bin/sh\nfor a; do target=$a; done\ncase $target in *:*) [ ${answers} = both ] || exit 1 ;; esac\necho 'rtt min/avg/max/mdev = 1.000/1.000/1.000/0.000 ms'\n`);
      chmodSync(join(dir, "ping"), 0o755);
      const out = healthFunctions(renderBundle(planGateway(dual())), [
        'rounds=$probes/test; mkdir -p "$linkstate" "$rounds"; enter_round 0',
        "for n in 0 1 2; do probe_round 1 $n; collect 1 || changed=''; done 2>/dev/null",
        'load_state 1; echo "$status"; cat "$rounds/b0/1.0"',
      ].join("\n"), { root: join(dir, "root"), bin: dir });
      return out.trim().split("\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it("takes it down when only its IPv6 targets go unanswered: reliability counts each family", () => {
    expect(afterRounds("both")).toEqual(["up", "2 2 2000 1"]);
    expect(afterRounds("ipv4")).toEqual(["down", "1 2 1000 0"]);
  });
});
