import { describe, expect, it } from "vitest";
import { MAX_LINKS } from "../../components/config";
import { planGateway, type Plan, type Variant } from "../../components/plan";
import { renderBundle, type Bundle } from "../../components/render";
import { gateway } from "./fixtures";
import { inexactWindow, Mangle, periodShares, walkOf } from "./kernel-sim";

const weightSets = [
  [1, 1],
  [3, 1],
  [5, 3, 2],
  [2, 4],
  [7, 11, 13],
  [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
  [100, 1],
  [1, 2, 3, 4, 5],
  [9, 6, 3],
  [1000, 999],
  [188, 19],
  [999, 1],
  [100, 40, 10, 7],
  Array(MAX_LINKS).fill(1),
  // At MAX_LINKS only equal weights fit the rule budget (no unequal set tried did); they reduce by their gcd.
  Array(MAX_LINKS).fill(1000),
];

function gatewayWithWeights(weights: number[], lastResort: "all" | "main" = "all") {
  return gateway((s) => {
    const template = s.gateways[0].links[1];
    s.gateways[0].links = weights.map((weight, i) => ({ ...template, name: `isp${i + 1}`, interface: `wan${i + 1}`, weight }));
    s.gateways[0].balance = { lastResort };
  });
}

/**
 * Restores bundle file `file` onto `mangle` and feeds it three periods of new connections: every
 * window of one period (starting anywhere in the first two) must hold each live link's exact share
 * and nothing else, and the rules walked must be the planned walk.
 */
function expectExact(plan: Plan, bundle: Bundle, mangle: Mangle, file: string, weights: number[], planned: Variant["walk"]) {
  expect(bundle[file], file).toBeDefined();
  const shares = periodShares(weights);
  const period = shares.reduce((a, b) => a + b, 0);
  const expected = new Map(plan.links.flatMap((l, i) => (shares[i] ? [[l.markValue, shares[i]] as const] : [])));
  const connections = mangle.restore(bundle[file]).balancer().feed(3 * period);
  expect(inexactWindow(connections, expected, period), file).toBeUndefined();
  const walk = walkOf(connections);
  expect(walk.worst, file).toBe(planned.worst);
  expect(walk.mean, file).toBeCloseTo(planned.mean, 9);
}

describe("the rendered split, run as the kernel runs its nth counters", () => {
  it.each(weightSets.map((weights) => ({ weights })))("every live-link variant gives exact shares in every window: $weights", ({ weights }) => {
    const plan = planGateway(gatewayWithWeights(weights));
    const bundle = renderBundle(plan);
    expect(plan.variants).toHaveLength(2 ** weights.length);
    const walkOfVariant = (key: string) => plan.variants.find((v) => v.key === key)!.walk;
    // What apply installs balances over every link before the daemon swaps anything.
    const mangle = new Mangle();
    expectExact(plan, bundle, mangle, "iptables.rules", weights, plan.families[0].balance.walk);
    // Then every variant, each swapped in on top of the one before, as the health daemon swaps.
    for (let mask = 1; mask < 1 << weights.length; mask++) {
      const live = weights.map((w, i) => (mask & (1 << i) ? w : 0));
      const key = plan.links.filter((_, i) => live[i]).map((l) => l.name).join("+");
      expectExact(plan, bundle, mangle, `variants/${key}.rules`, live, walkOfVariant(key));
    }
    expectExact(plan, bundle, mangle, "variants/none.rules", weights, walkOfVariant("none"));
  });

  it("with every link down and lastResort main, no new connection is marked: the main table routes it", () => {
    const plan = planGateway(gatewayWithWeights([5, 3, 2], "main"));
    const bundle = renderBundle(plan);
    const mangle = new Mangle().restore(bundle["iptables.rules"]).restore(bundle["variants/isp1+isp2.rules"]);
    const connections = mangle.restore(bundle["variants/none.rules"]).balancer().feed(30);
    expect(connections).toEqual(Array(30).fill({ walked: 0 }));
  });
});

describe("planGateway: the split's variants", () => {
  it("every variant declares the plan's whole chain set, so a swap empties the chains it does not use", () => {
    const plan = planGateway(gatewayWithWeights([5, 3, 2]));
    expect(plan.families[0].balanceChains).toEqual(["MWAN-BALANCE", "MWAN-BALANCE-1"]);
    for (const v of plan.variants) expect(v.chains.map((c) => c.name), v.key).toEqual(plan.families[0].balanceChains);
  });

  it("with every link down, 'all' keeps balancing over every link and 'main' marks nothing", () => {
    const all = planGateway(gatewayWithWeights([5, 3, 2], "all"));
    const none = all.variants.find((v) => v.key === "none")!;
    expect({ chains: none.chains, walk: none.walk, carrying: none.carrying }).toEqual({ chains: all.families[0].balance.chains, walk: all.families[0].balance.walk, carrying: ["isp1", "isp2", "isp3"] });
    const main = planGateway(gatewayWithWeights([5, 3, 2], "main"));
    expect(main.variants.find((v) => v.key === "none")).toEqual({
      key: "none",
      live: [],
      chains: main.families[0].balanceChains.map((name) => ({ name, rules: [] })),
      walk: { worst: 0, mean: 0 },
      carrying: [],
      carryingDiffers: false,
      idleMove: [],
    });
  });

  it("a single live link takes everything without a statistic match, marking in place", () => {
    const plan = planGateway(gatewayWithWeights([5, 3, 2]));
    expect(plan.variants.find((v) => v.key === "isp2")!.chains).toEqual([
      { name: "MWAN-BALANCE", rules: [{ match: "", target: "-j MARK --set-xmark 0x200/0xff00" }] },
      { name: "MWAN-BALANCE-1", rules: [] },
    ]);
  });
});

describe("planGateway: marks, tables, priorities", () => {
  const plan = planGateway(gateway());

  it("puts each link's mark in our byte with a mask", () => {
    expect(plan.links.map((l) => l.fwmark)).toEqual(["0x100/0xff00", "0x200/0xff00"]);
    expect(plan.links.map((l) => l.table)).toEqual([101, 102]);
  });

  it("routes LAN and other specific main-table routes before any link table", () => {
    expect(plan.families[0].ipRules[0]).toBe("rule add pref 1000 lookup main suppress_prefixlength 0");
  });

  it("has fwmark and from-address rules for each link, undo lines for each", () => {
    expect(plan.families[0].ipRules).toContain("rule add pref 1200 fwmark 0x100/0xff00 lookup 101");
    expect(plan.families[0].ipRules).toContain("rule add pref 1201 fwmark 0x200/0xff00 lookup 102");
    expect(plan.families[0].ipRules).toContain("rule add pref 1100 from 203.0.113.2 lookup 101");
    expect(plan.families[0].ipRules.some((r) => r.includes("lookup 102") && r.includes("from 198"))).toBe(false); // isp2 has no address
    expect(plan.families[0].ipUndo).toEqual([...plan.families[0].ipRules.map((r) => r.replace("rule add", "rule del")), "route flush table 101", "route flush table 102"]);
  });

  it("routes via the gateway, or as a device route for PPP", () => {
    expect(plan.families[0].ipRoutes).toContain("route replace default via 203.0.113.1 dev wan1 table 101");
    const ppp = planGateway(gateway((s) => ((s.gateways[0].links[1].interface = "ppp0"), delete s.gateways[0].links[1].gateway)));
    expect(ppp.families[0].ipRoutes).toContain("route replace default dev ppp0 table 102");
    // as `ip route show table 102` prints a device route, for drift
    expect(ppp.families[0].shown.routes).toContainEqual({ table: 102, route: "default dev ppp0 scope link" });
  });

  it("SNATs to the link address, or masquerades without one", () => {
    expect(plan.families[0].nat).toEqual([
      { match: "-s 198.18.1.0/24 -o wan1", target: "SNAT --to-source 203.0.113.2" },
      { match: "-s 198.18.1.0/24 -o wan2", target: "MASQUERADE" },
    ]);
  });

  it("enables forwarding and mark-aware reverse-path checks", () => {
    expect(plan.sysctls).toEqual([
      { key: "net.ipv4.ip_forward", value: "1" },
      { key: "net.ipv4.conf.all.src_valid_mark", value: "1" },
    ]);
  });

  it("installs under the gateway's root", () => {
    expect(plan.installDir).toBe("/etc/multiwan");
    expect(planGateway(gateway((s) => (s.gateways[0].root = "/srv/gw1/"))).installDir).toBe("/srv/gw1/etc/multiwan");
  });
});

describe("planGateway: what is balanced", () => {
  it("never balances the LAN networks, the excluded ones, multicast or the limited broadcast", () => {
    const plan = planGateway(gateway((s) => (s.balance = { exclude: ["192.0.2.0/24"] })));
    // mDNS, SSDP and DHCP from the LAN would otherwise take slots of the split.
    expect(plan.families[0].bypass).toEqual(["198.18.1.0/24", "192.0.2.0/24", "224.0.0.0/4", "255.255.255.255/32"]);
  });

  it("selects seed 2's tcp 22, 25, 80, 443", () => {
    const plan = planGateway(gateway((s) => (s.balance = { protocols: ["tcp"], ports: [22, 25, 80, 443] })));
    expect(plan.families[0].classify).toEqual([{ match: "", target: "MWAN-SELECT" }]);
    expect(plan.families[0].select).toEqual({ chain: "MWAN-SELECT", rules: [{ match: "-p tcp -m multiport --dports 22,25,80,443 ", target: "MWAN-BALANCE" }] });
  });

  it("splits long port lists into multiport's 15 slots, ranges counting twice", () => {
    const ports = [...Array.from({ length: 14 }, (_, i) => 1000 + i), "2000-2100"];
    const plan = planGateway(gateway((s) => (s.balance = { protocols: ["udp"], ports })));
    expect(plan.families[0].select?.rules).toEqual([
      { match: `-p udp -m multiport --dports ${ports.slice(0, 14).join(",")} `, target: "MWAN-BALANCE" },
      { match: "-p udp -m multiport --dports 2000:2100 ", target: "MWAN-BALANCE" },
    ]);
  });

  it("ports without protocols mean tcp and udp; no selection means everything", () => {
    expect(planGateway(gateway((s) => (s.balance = { ports: [53] }))).families[0].select?.rules).toEqual([
      { match: "-p tcp -m multiport --dports 53 ", target: "MWAN-BALANCE" },
      { match: "-p udp -m multiport --dports 53 ", target: "MWAN-BALANCE" },
    ]);
    const all = planGateway(gateway());
    expect([all.families[0].classify, all.families[0].select]).toEqual([[{ match: "", target: "MWAN-BALANCE" }], undefined]);
  });

  it("balances gateway-originated traffic only when asked, pinning sockets bound to a link address", () => {
    expect(planGateway(gateway()).families[0].local).toBe(false);
    expect(planGateway(gateway()).families[0].ipRules).toContain("rule add pref 1100 from 203.0.113.2 lookup 101");
    const plan = planGateway(gateway((s) => (s.balance = { local: true })));
    expect(plan.families[0].local).toBe(true);
    // Pinned unless routed out of the link's own interface already: an unbound socket (the main
    // route's source) is balanced; and no rule by address sends it back to that link.
    expect(plan.families[0].pinnedSources).toEqual([{ source: "203.0.113.2/32", interface: "wan1", fwmark: "0x100/0xff00" }]);
    expect(plan.families[0].ipRules.filter((r) => r.includes(" from "))).toEqual([]);
    expect(plan.links[0].fromPriority).toBeUndefined();
    expect(plan.families[0].nat).toContainEqual({ match: "-o wan2 -m addrtype --src-type LOCAL", target: "MASQUERADE" });
  });

  it("marks inbound connections for their link unless inbound stickiness is off", () => {
    expect(planGateway(gateway()).families[0].inbound.map((l) => l.interface)).toEqual(["wan1", "wan2"]);
    expect(planGateway(gateway((s) => (s.balance = { inboundSticky: false }))).families[0].inbound).toEqual([]);
  });
});
