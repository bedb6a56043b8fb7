// Tiers, traffic policies and failback, through the rendered rules: new connections (source,
// protocol, port, LAN interface) walk MWAN-CLASSIFY of iptables.rules with a variant file restored
// on top, as the kernel walks them after a swap by the health daemon; and health.sh's failback run
// by sh against a fake conntrack.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { planGateway, type Plan } from "../../components/plan";
import { renderBundle, type Bundle } from "../../components/render";
import { gateway } from "./fixtures";
import { healthFunctions } from "./health-sh";
import { inexactWindow, Mangle, type Connection, type Packet } from "./kernel-sim";

interface LinkSpec {
  name: string;
  weight?: number;
  tier?: number;
  failback?: "keep" | "move";
}

/** The fixture gateway with `links` (on wan1, wan2, …) and `balance`, planned and rendered. */
function deploy(links: LinkSpec[], balance: Record<string, unknown> = {}, edit: (gw: any) => void = () => {}): { plan: Plan; bundle: Bundle } {
  const plan = planGateway(
    gateway((s) => {
      const template = s.gateways[0].links[1];
      s.gateways[0].links = links.map((l, i) => ({ ...template, weight: 1, ...l, interface: `wan${i + 1}` }));
      s.gateways[0].balance = balance;
      edit(s.gateways[0]);
    }),
  );
  return { plan, bundle: renderBundle(plan) };
}

/** A new connection from LAN host .`host` (198.18.1.0/24 on lan0) to a web server, with `over` changed. */
const from = (host: number, over: Packet = {}): Packet => ({ source: `198.18.1.${host}`, destination: "198.51.100.80", protocol: "tcp", dport: 443, in: "lan0", ...over });
const sip = (host: number): Packet => from(host, { protocol: "udp", dport: 5060 });

/** What the kernel does with new connections once the daemon has put `variant` in place. */
function classify({ bundle }: { bundle: Bundle }, variant: string, packets: Packet[]): Connection[] {
  const file = `variants/${variant}.rules`;
  expect(bundle[file], file).toBeDefined();
  const classifier = new Mangle().restore(bundle["iptables.rules"]).restore(bundle[file]).balancer("MWAN-CLASSIFY");
  return packets.map((p) => classifier.connect(p));
}

/** The link each connection was marked for (`unmarked`, or `unreachable` for the route to nowhere). */
function linksOf(plan: Plan, connections: Connection[]): string[] {
  const unreachable = plan.unreachable && Number(plan.unreachable.fwmark.split("/")[0]);
  return connections.map((c) =>
    c.mark === undefined ? "unmarked" : c.mark === unreachable ? "unreachable" : (plan.links.find((l) => l.markValue === c.mark)?.name ?? `mark ${c.mark}`),
  );
}

/** Exactly `shares` (link → connections) in every window of their sum, and nothing else. */
function expectExact(plan: Plan, connections: Connection[], shares: Record<string, number>, what: string) {
  const expected = new Map(Object.entries(shares).map(([name, n]) => [plan.links.find((l) => l.name === name)!.markValue, n] as const));
  const width = Object.values(shares).reduce((a, b) => a + b, 0);
  expect(connections.length, what).toBeGreaterThanOrEqual(2 * width);
  expect(inexactWindow(connections, expected, width), what).toBeUndefined();
}

const count = (names: string[]) => names.reduce<Record<string, number>>((c, n) => ((c[n] = (c[n] ?? 0) + 1), c), {});

const scratch = mkdtempSync(join(tmpdir(), "mwt-policies-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("the kernel simulation's matches", () => {
  const classifier = (...rules: string[]) =>
    new Mangle()
      .restore(["*mangle", ":MWAN-CLASSIFY - [0:0]", ":MWAN-MARK-1 - [0:0]", "-A MWAN-MARK-1 -j MARK --set-xmark 0x100/0xff00", ...rules.map((r) => `-A MWAN-CLASSIFY ${r}`), "COMMIT"].join("\n"))
      .balancer("MWAN-CLASSIFY");

  it("matches source bits under a dotted mask, ports of a protocol, an interface; RETURN ends the walk", () => {
    const c = classifier("-d 198.18.1.0/24 -j RETURN", "-s 0.0.0.1/0.0.0.3 -i lan0 -p udp -m multiport --dports 53,5000:5100 -g MWAN-MARK-1", "-j MARK --set-xmark 0x200/0xff00");
    const marks = (packets: Packet[]) => packets.map((p) => c.connect(p).mark);
    expect(marks([sip(5), sip(9), from(5, { protocol: "udp", dport: 53 }), from(5, { protocol: "udp", dport: 5100 })])).toEqual([0x100, 0x100, 0x100, 0x100]);
    expect(marks([sip(6), sip(7), from(5), from(5, { protocol: "udp", dport: 5101 }), { ...sip(5), in: "lan1" }])).toEqual([0x200, 0x200, 0x200, 0x200, 0x200]);
    expect(marks([from(5, { destination: "198.18.1.7" })])).toEqual([undefined]);
  });

  it("steps an nth counter only for connections its rule's other matches let through", () => {
    const c = classifier("-p udp -m statistic --mode nth --every 2 --packet 0 -g MWAN-MARK-1", "-j MARK --set-xmark 0x200/0xff00");
    expect([sip(1), from(1), sip(1), from(1), sip(1)].map((p) => c.connect(p).mark)).toEqual([0x100, 0x200, 0x200, 0x200, 0x100]);
  });

  it("refuses what iptables would refuse or change, and a packet without a field a rule reads", () => {
    expect(() => classifier("-m multiport --dports 53 -g MWAN-MARK-1")).toThrow(/does not model/); // no protocol with ports
    expect(() => classifier("-s 0.0.0.5/0.0.0.3 -g MWAN-MARK-1")).toThrow(/bits outside the mask/);
    expect(() => classifier("! -s 198.18.1.0/24 -j RETURN")).toThrow(/does not model/);
    expect(() => classifier("-s 198.18.1.0/24 -j RETURN").connect({})).toThrow(/the packet's source/);
  });
});

describe("tiers", () => {
  const tiered = deploy([{ name: "isp1" }, { name: "isp2" }, { name: "lte", tier: 2 }]);
  const web = Array.from({ length: 60 }, (_, i) => from(10 + (i % 50)));

  it("balance the best live tier by weight, and the backup only while no primary lives", () => {
    expectExact(tiered.plan, classify(tiered, "isp1+isp2+lte", web), { isp1: 1, isp2: 1 }, "all up");
    expectExact(tiered.plan, classify(tiered, "isp2+lte", web), { isp2: 1 }, "isp1 down");
    expectExact(tiered.plan, classify(tiered, "lte", web), { lte: 1 }, "both primaries down");
  });

  it("in every variant: the live links of the lowest tier with one, and iptables.rules as with every link up", () => {
    for (const v of tiered.plan.variants.filter((v) => v.key !== "none")) {
      const primaries = v.live.filter((l) => l !== "lte");
      const carriers = primaries.length ? primaries : ["lte"];
      expectExact(tiered.plan, classify(tiered, v.key, web), Object.fromEntries(carriers.map((l) => [l, 1])), v.key);
      expect(v.carrying, v.key).toEqual(carriers);
    }
    const installed = new Mangle().restore(tiered.bundle["iptables.rules"]).balancer("MWAN-CLASSIFY");
    expectExact(tiered.plan, web.map((p) => installed.connect(p)), { isp1: 1, isp2: 1 }, "iptables.rules");
  });

  it("a backup of weight 3 next to one of weight 1 splits 3:1 once the primary is down", () => {
    const two = deploy([{ name: "isp1" }, { name: "lte1", tier: 2, weight: 3 }, { name: "lte2", tier: 2 }]);
    expectExact(two.plan, classify(two, "isp1+lte1+lte2", web), { isp1: 1 }, "primary up");
    expectExact(two.plan, classify(two, "lte1+lte2", web), { lte1: 3, lte2: 1 }, "primary down");
  });
});

describe("a policy pinning SIP to isp2, 3:1 for the rest", () => {
  const voip = (whenDown?: string, links = [{ name: "isp1", weight: 3 }, { name: "isp2" }]) =>
    deploy(links, { policies: [{ name: "voip", match: { protocols: ["udp"], ports: [5060] }, links: ["isp2"], ...(whenDown ? { whenDown } : {}) }] });
  /** Every third connection a SIP call, from hosts .10 to .59. */
  const mixed = Array.from({ length: 240 }, (_, i) => (i % 3 === 0 ? sip(10 + (i % 50)) : from(10 + (i % 50))));
  const isSip = (i: number) => i % 3 === 0;

  it("with both links up: every SIP connection on isp2, the rest exactly 3:1", () => {
    const d = voip();
    const connections = classify(d, "isp1+isp2", mixed);
    expect(new Set(linksOf(d.plan, connections.filter((_, i) => isSip(i))))).toEqual(new Set(["isp2"]));
    expectExact(d.plan, connections.filter((_, i) => !isSip(i)), { isp1: 3, isp2: 1 }, "the rest");
  });

  it("isp2 down, whenDown default: SIP follows the default split", () => {
    const d = voip();
    expect(count(linksOf(d.plan, classify(d, "isp1", mixed)))).toEqual({ isp1: 240 });
    // With a third link the default split is visible: SIP joins the rest in it, exactly 3:1.
    const three = voip(undefined, [{ name: "isp1", weight: 3 }, { name: "isp2" }, { name: "isp3" }]);
    expectExact(three.plan, classify(three, "isp1+isp3", mixed), { isp1: 3, isp3: 1 }, "isp2 down");
  });

  it("isp2 down, whenDown unreachable: SIP gets the mark of the route to nowhere, the rest isp1", () => {
    const d = voip("unreachable");
    const down = linksOf(d.plan, classify(d, "isp1", mixed));
    expect(count(down.filter((_, i) => isSip(i)))).toEqual({ unreachable: 80 });
    expect(count(down.filter((_, i) => !isSip(i)))).toEqual({ isp1: 160 });
    // Back up: SIP on isp2 again.
    expect(new Set(linksOf(d.plan, classify(d, "isp1+isp2", mixed).filter((_, i) => isSip(i))))).toEqual(new Set(["isp2"]));
    // every link down with lastResort all: as with all up
    expect(new Set(linksOf(d.plan, classify(d, "none", mixed).filter((_, i) => isSip(i))))).toEqual(new Set(["isp2"]));
  });

  it("the route to nowhere: its own mark, a rule and a table holding only a default route that refuses", () => {
    const { plan, bundle } = voip("unreachable");
    const { fwmark, table, tableName, priority } = plan.unreachable!;
    expect(plan.links.map((l) => l.fwmark)).not.toContain(fwmark);
    expect(plan.links.map((l) => l.table)).not.toContain(table);
    expect(Number(fwmark.split("/")[0]) & ~Number(plan.mask)).toBe(0);
    expect(bundle["ip.batch"]).toContain(`rule add pref ${priority} fwmark ${fwmark} lookup ${table}\n`);
    // prohibit: an ICMP error that TCP and connected UDP sockets both take as fatal
    expect(bundle["ip.batch"].split("\n").filter((l) => l.endsWith(` table ${table}`))).toEqual([`route replace prohibit default table ${table}`]);
    expect(bundle["rt_tables"]).toContain(`${table}\t${tableName}\n`);
    expect(tableName).toBe("mwan.unreachable");
    expect(bundle["ip.undo"]).toContain(`rule del pref ${priority} fwmark ${fwmark} lookup ${table}\n`);
    // Without a policy that refuses, none of it.
    expect(voip().plan.unreachable).toBeUndefined();
    expect(voip().bundle["ip.batch"]).not.toContain("unreachable");
  });
});

describe("what MWAN-CLASSIFY sends where", () => {
  const d = deploy([{ name: "isp1" }, { name: "isp2" }, { name: "isp3" }], {
    exclude: ["192.0.2.0/24"],
    ports: [443],
    policies: [
      { name: "voip", match: { protocols: ["udp"], ports: [5060, "10000-20000"] }, links: ["isp3"] },
      { name: "guests", match: { lanInterfaces: ["lan1"] }, links: ["isp2"] },
      { name: "office", match: { sources: ["198.18.1.128/25"], destinations: ["198.51.100.0/24", "203.0.113.0/24"] }, links: ["isp1"] },
    ],
  }, (gw) => (gw.lan = { interfaces: ["lan0", "lan1"], networks: ["198.18.1.0/24"] }));
  const where = (p: Packet) => linksOf(d.plan, classify(d, "isp1+isp2+isp3", [p]))[0];

  it("the first policy that matches takes a connection, on every condition it names", () => {
    expect(where(sip(200))).toBe("isp3"); // voip before office
    expect(where(from(200, { protocol: "udp", dport: 15000 }))).toBe("isp3"); // a port of the range
    expect(where(from(10, { in: "lan1" }))).toBe("isp2");
    expect(where(from(10, { in: "lan1", protocol: "udp", dport: 5060 }))).toBe("isp3");
    expect(where(from(200))).toBe("isp1");
    expect(where(from(200, { destination: "203.0.113.9", dport: 22 }))).toBe("isp1"); // a policy is not limited to balance.ports
  });

  it("what no policy takes gets the default selection, and the bypass comes first", () => {
    // Office's sources but not its destinations: the default split, 1:1:1.
    const other = from(200, { destination: "198.18.99.1" });
    expect(linksOf(d.plan, classify(d, "isp1+isp2+isp3", [other, other, other])).sort()).toEqual(["isp1", "isp2", "isp3"]);
    expect(where(from(10, { dport: 80 }))).toBe("unmarked"); // not in balance.ports: the main table
    expect(where(from(10, { destination: "198.18.1.7" }))).toBe("unmarked"); // the LAN
    expect(where(from(10, { destination: "192.0.2.10", protocol: "udp", dport: 5060 }))).toBe("unmarked"); // excluded, even for SIP
    expect(where(from(10, { local: true }))).toBe("unmarked"); // the gateway itself
  });
});

describe("sticky by source", () => {
  /** 60 consecutive LAN addresses (.10 to .69), 20 connections each, round robin. */
  const pool = Array.from({ length: 1200 }, (_, i) => from(10 + (i % 60), { dport: 1000 + i }));
  const stickyPolicy = { policies: [{ name: "by-source", match: { sources: ["198.18.1.0/24"] }, sticky: "source" }] };
  /** Address → the one link all its connections took (fails when an address used two). */
  function linkPerAddress(d: { plan: Plan; bundle: Bundle }, variant: string): Map<string, string> {
    const marked = linksOf(d.plan, classify(d, variant, pool));
    const per = new Map<string, Set<string>>();
    pool.forEach((p, i) => per.set(p.source!, (per.get(p.source!) ?? new Set()).add(marked[i])));
    for (const [address, links] of per) expect([...links], `${variant}: ${address}`).toHaveLength(1);
    return new Map([...per].map(([address, links]) => [address, [...links][0]]));
  }

  it("3:1: each address on one link, the addresses 45/15", () => {
    const d = deploy([{ name: "isp1", weight: 3 }, { name: "isp2" }], stickyPolicy);
    const counts = count([...linkPerAddress(d, "isp1+isp2").values()]);
    // Bit-reversed values: isp2 has the addresses ending in binary 11, one in four of any run.
    expect(counts).toEqual({ isp1: 45, isp2: 15 });
  });

  it("one of three links down: only its addresses move, spread over the other two", () => {
    const d = deploy([{ name: "isp1" }, { name: "isp2" }, { name: "isp3" }], stickyPolicy);
    const before = linkPerAddress(d, "isp1+isp2+isp3");
    const after = linkPerAddress(d, "isp2+isp3");
    // 256 values over three links: 86/85/85, so 60 addresses land within one or two of a third.
    expect(count([...before.values()])).toEqual({ isp1: 21, isp2: 19, isp3: 20 });
    const moved = [...before].filter(([address, link]) => after.get(address) !== link);
    expect(moved.map(([, link]) => link)).toEqual(Array(21).fill("isp1"));
    expect(count(moved.map(([address]) => after.get(address)!))).toEqual({ isp2: 10, isp3: 11 });
  });
});

describe("failback move", () => {
  const links: LinkSpec[] = [{ name: "isp1" }, { name: "isp2", failback: "move" }, { name: "lte", tier: 2, failback: "move" }];
  const d = deploy(links);
  const variant = (key: string) => d.plan.variants.find((v) => v.key === key)!;

  it("a live backup of failback move is idle while a better tier carries", () => {
    expect([variant("isp1+lte").carrying, variant("isp1+lte").idleMove]).toEqual([["isp1"], [3]]);
    expect([variant("isp1+isp2+lte").carrying, variant("isp1+isp2+lte").idleMove]).toEqual([["isp1", "isp2"], [3]]);
    expect([variant("lte").carrying, variant("lte").idleMove]).toEqual([["lte"], []]);
    expect(variant("isp1+isp2").idleMove).toEqual([]); // a dead backup has no connections to move
    // A keep backup is never moved.
    expect(deploy([{ name: "isp1" }, { name: "lte", tier: 2 }]).plan.variants.flatMap((v) => v.idleMove)).toEqual([]);
  });

  it("a backup that a policy still uses carries, so it is not idle", () => {
    const smtp = deploy(links, { policies: [{ name: "smtp", match: { protocols: ["tcp"], ports: [25] }, links: ["lte"] }] });
    const v = smtp.plan.variants.find((v) => v.key === "isp1+lte")!;
    expect([v.carrying, v.idleMove]).toEqual([["isp1", "lte"], []]);
  });

  /** health.sh without its main loop, then `commands`, with a conntrack that logs its arguments. */
  function healthSh(commands: string): string[] {
    const bin = join(scratch, "bin");
    mkdirSync(bin, { recursive: true });
    const calls = join(scratch, "conntrack.calls");
    writeFileSync(join(bin, "conntrack"), `#!/bin/sh\necho "$*" >>"${calls}"\n`);
    chmodSync(join(bin, "conntrack"), 0o755);
    writeFileSync(calls, "");
    const out = healthFunctions(d.bundle, commands, { bin });
    return [...out.trim().split("\n"), ...readFileSync(calls, "utf8").trim().split("\n").filter(Boolean).map((c) => `conntrack ${c}`)];
  }

  it("health.sh knows the idle backups of each variant", () => {
    expect(healthSh(`for v in isp1+lte isp1+isp2+lte isp2+lte lte isp1+isp2 none; do echo "$v:" $(idle_moves "$v"); done`)).toEqual([
      "isp1+lte: 3",
      "isp1+isp2+lte: 3",
      "isp2+lte: 3",
      "lte:",
      "isp1+isp2:",
      "none:",
    ]);
  });

  it("health.sh deletes a move backup's connections when a better tier comes back, and only then", () => {
    const lte = d.plan.links[2];
    // The LAN clients' connections only: inbound ones and the gateway's own cannot move.
    const deletes = d.plan.lanNetworks.map((net) => `conntrack -D -m ${lte.markValue}/${d.plan.health.markMask} -s ${net}`);
    expect(deletes.length).toBeGreaterThan(0);
    expect(healthSh("fail_back lte isp1+lte")).toEqual(["", ...deletes]);
    expect(healthSh("fail_back lte isp2+lte")).toEqual(["", ...deletes]);
    expect(healthSh("fail_back isp1+lte isp1+isp2+lte")).toEqual([""]); // idle before already
    expect(healthSh("fail_back isp1+isp2+lte isp2+lte")).toEqual([""]); // isp1 down: isp2 still carries, lte stays idle
    expect(healthSh("fail_back isp1+isp2+lte lte")).toEqual([""]); // lte takes over: nothing to delete
  });
});
