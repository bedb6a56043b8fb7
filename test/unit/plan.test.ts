import { describe, expect, it } from "vitest";
import { exactWeightedSplit, planGateway, type Slot } from "../../components/plan";
import { gateway } from "./fixtures";

/**
 * Feed `packets` new connections through a balancing chain the way xt_statistic does: every rule
 * has its own counter that advances on each packet reaching it, and a packet that matches gets
 * the rule's mark but keeps traversing (MARK does not end the chain). The last mark wins.
 */
function simulate(slots: Slot[], packets: number): { marks: Map<string, number>; unmarked: number; multi: number } {
  const rules = slots.map((s) => {
    const m = /--every (\d+) --packet (\d+)/.exec(s.match);
    return { every: m ? Number(m[1]) : 1, packet: m ? Number(m[2]) : 0, fwmark: s.fwmark, count: 0 };
  });
  const marks = new Map<string, number>();
  let unmarked = 0;
  let multi = 0;
  for (let p = 0; p < packets; p++) {
    const hits = rules.filter((r) => {
      r.count = r.count === r.every - 1 ? 0 : r.count + 1; // the kernel's nth counter
      return r.count === r.packet % r.every;
    });
    if (hits.length === 0) unmarked++;
    if (hits.length > 1) multi++;
    const mark = hits.at(-1)?.fwmark;
    if (mark) marks.set(mark, (marks.get(mark) ?? 0) + 1);
  }
  return { marks, unmarked, multi };
}

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
];

function gatewayWithWeights(weights: number[], lastResort: "all" | "main" = "all") {
  return gateway((s) => {
    const template = s.gateways[0].links[1];
    s.gateways[0].links = weights.map((weight, i) => ({ ...template, name: `isp${i + 1}`, interface: `wan${i + 1}`, weight }));
    s.gateways[0].balance = { lastResort };
  });
}

describe("exactWeightedSplit", () => {
  it.each(weightSets)("gives each link exactly its weight's slots: %j", (...weights) => {
    const owners = exactWeightedSplit(weights);
    const total = weights.reduce((a, b) => a + b, 0);
    weights.forEach((w, i) => expect(owners.filter((o) => o === i).length / owners.length).toBeCloseTo(w / total, 12));
  });

  it("reduces by the gcd: 2:4 needs 3 slots, not 6", () => expect(exactWeightedSplit([2, 4])).toHaveLength(3));

  it("interleaves instead of running one link's slots together", () => {
    expect(exactWeightedSplit([1, 1])).toEqual([0, 1]);
    const owners = exactWeightedSplit([5, 3, 2]);
    const runs = owners.filter((o, i) => i > 0 && o === owners[i - 1]).length;
    expect(runs).toBeLessThanOrEqual(2);
  });
});

describe("planGateway: the split as statistic rules", () => {
  it.each(weightSets)("every new connection gets exactly one mark, in exact shares: %j", (...weights) => {
    const plan = planGateway(gatewayWithWeights(weights));
    const total = weights.reduce((a, b) => a + b, 0);
    const cycle = plan.balance.slots.length;
    const packets = cycle * 37;
    const { marks, unmarked, multi } = simulate(plan.balance.slots, packets);
    expect(unmarked).toBe(0);
    expect(multi).toBe(0);
    plan.links.forEach((l, i) => expect(marks.get(l.fwmark)).toBe((packets * weights[i]) / total));
  });

  it("the seed's mark-guarded 3:1 rules are not exact (the bug this design avoids)", () => {
    // Seed: four rules behind `-m mark --mark 0`, each counting only what reaches it.
    const owners = [1, 2, 1, 1];
    const counters = [0, 0, 0, 0];
    const got = { 1: 0, 2: 0, none: 0 } as Record<string, number>;
    for (let p = 0; p < 4000; p++) {
      let mark = 0;
      for (let r = 0; r < 4 && mark === 0; r++) {
        counters[r] = counters[r] === 3 ? 0 : counters[r] + 1;
        if (counters[r] === r) mark = owners[r];
      }
      got[mark || "none"]++;
    }
    expect(got.none).toBeGreaterThan(0);
    expect(got[1] / 4000).not.toBeCloseTo(0.75, 2);
  });

  it("plans a variant for every non-empty set of live links, in their weight ratio", () => {
    const weights = [5, 3, 2, 1];
    const plan = planGateway(gatewayWithWeights(weights));
    expect(plan.variants).toHaveLength(2 ** weights.length); // 15 subsets + none
    for (let mask = 1; mask < 2 ** weights.length; mask++) {
      const live = plan.links.filter((_, i) => mask & (1 << i));
      const variant = plan.variants.find((v) => v.key === live.map((l) => l.name).join("+"));
      expect(variant, `variant for mask ${mask}`).toBeDefined();
      const liveWeights = plan.links.map((_, i) => (mask & (1 << i) ? weights[i] : 0));
      const total = liveWeights.reduce((a, b) => a + b, 0);
      const packets = variant!.slots.length * 10;
      const { marks, unmarked } = simulate(variant!.slots, packets);
      expect(unmarked).toBe(0);
      plan.links.forEach((l, i) => expect(marks.get(l.fwmark) ?? 0).toBe((packets * liveWeights[i]) / total));
    }
  });

  it("with every link down, 'all' keeps balancing over every link and 'main' marks nothing", () => {
    const all = planGateway(gatewayWithWeights([3, 1], "all"));
    expect(all.variants.find((v) => v.key === "none")!.slots).toEqual(all.balance.slots);
    const main = planGateway(gatewayWithWeights([3, 1], "main"));
    expect(main.variants.find((v) => v.key === "none")!.slots).toEqual([]);
  });

  it("a single live link takes everything without a statistic match", () => {
    const plan = planGateway(gatewayWithWeights([3, 1]));
    expect(plan.variants.find((v) => v.key === "isp2")!.slots).toEqual([{ match: "", fwmark: "0x200/0xff00", link: "isp2" }]);
  });
});

describe("planGateway: marks, tables, priorities", () => {
  const plan = planGateway(gateway());

  it("puts each link's mark in our byte with a mask", () => {
    expect(plan.links.map((l) => l.fwmark)).toEqual(["0x100/0xff00", "0x200/0xff00"]);
    expect(plan.links.map((l) => l.table)).toEqual([101, 102]);
  });

  it("routes LAN and other specific main-table routes before any link table", () => {
    expect(plan.ipRules[0]).toBe("rule add pref 1000 lookup main suppress_prefixlength 0");
  });

  it("has fwmark and from-address rules for each link, undo lines for each", () => {
    expect(plan.ipRules).toContain("rule add pref 1200 fwmark 0x100/0xff00 lookup 101");
    expect(plan.ipRules).toContain("rule add pref 1201 fwmark 0x200/0xff00 lookup 102");
    expect(plan.ipRules).toContain("rule add pref 1100 from 203.0.113.2 lookup 101");
    expect(plan.ipRules.some((r) => r.includes("lookup 102") && r.includes("from 198"))).toBe(false); // isp2 has no address
    expect(plan.ipUndo).toEqual([...plan.ipRules.map((r) => r.replace("rule add", "rule del")), "route flush table 101", "route flush table 102"]);
  });

  it("routes via the gateway, or as a device route for PPP", () => {
    expect(plan.ipRoutes).toContain("route replace default via 203.0.113.1 dev wan1 table 101");
    const ppp = planGateway(gateway((s) => ((s.gateways[0].links[1].interface = "ppp0"), delete s.gateways[0].links[1].gateway)));
    expect(ppp.ipRoutes).toContain("route replace default dev ppp0 table 102");
  });

  it("SNATs to the link address, or masquerades without one", () => {
    expect(plan.nat).toEqual([
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
  it("never balances the LAN networks or the excluded ones", () => {
    const plan = planGateway(gateway((s) => (s.balance = { exclude: ["192.0.2.0/24"] })));
    expect(plan.bypass).toEqual(["198.18.1.0/24", "192.0.2.0/24"]);
  });

  it("selects seed 2's tcp 22, 25, 80, 443", () => {
    const plan = planGateway(gateway((s) => (s.balance = { protocols: ["tcp"], ports: [22, 25, 80, 443] })));
    expect(plan.select).toEqual(["-p tcp -m multiport --dports 22,25,80,443 "]);
  });

  it("splits long port lists into multiport's 15 slots, ranges counting twice", () => {
    const ports = [...Array.from({ length: 14 }, (_, i) => 1000 + i), "2000-2100"];
    const plan = planGateway(gateway((s) => (s.balance = { protocols: ["udp"], ports })));
    expect(plan.select).toEqual([
      `-p udp -m multiport --dports ${ports.slice(0, 14).join(",")} `,
      "-p udp -m multiport --dports 2000:2100 ",
    ]);
  });

  it("ports without protocols mean tcp and udp; no selection means everything", () => {
    expect(planGateway(gateway((s) => (s.balance = { ports: [53] }))).select).toEqual([
      "-p tcp -m multiport --dports 53 ",
      "-p udp -m multiport --dports 53 ",
    ]);
    expect(planGateway(gateway()).select).toEqual([""]);
  });

  it("balances gateway-originated traffic only when asked, pinning sockets bound to a link address", () => {
    expect(planGateway(gateway()).local).toBe(false);
    const plan = planGateway(gateway((s) => (s.balance = { local: true })));
    expect(plan.local).toBe(true);
    expect(plan.pinnedSources).toEqual([{ address: "203.0.113.2", fwmark: "0x100/0xff00" }]);
    expect(plan.nat).toContainEqual({ match: "-o wan2 -m addrtype --src-type LOCAL", target: "MASQUERADE" });
  });

  it("marks inbound connections for their link unless inbound stickiness is off", () => {
    expect(planGateway(gateway()).inbound.map((l) => l.interface)).toEqual(["wan1", "wan2"]);
    expect(planGateway(gateway((s) => (s.balance = { inboundSticky: false }))).inbound).toEqual([]);
  });
});
