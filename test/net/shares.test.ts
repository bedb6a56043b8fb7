// Real connections through real netfilter: each link's share of new connections is its weight's.
import { expect, it } from "vitest";
import { withLab } from "../../lab/lab";
import { deploy, labSite, unmarkedConnections } from "../../lab/deploy";
import { describeAsRoot } from "../helpers/root";

// 188:19 (weights written as 940/95 Mbit/s) is a split of W = 207 through nested counters: 20
// periods of it, within 0.1 point.
describeAsRoot.each([
  { links: 2, weights: [3, 1], connections: 2000, points: 1 },
  { links: 3, weights: [5, 3, 2], connections: 2000, points: 1 },
  { links: 2, weights: [188, 19], connections: 4140, points: 0.1 },
])("$links links weighted $weights", ({ links, weights, connections, points }) => {
  it(`splits ${connections} new connections within ±${points} point of the weights, none failed or unmarked`, async () => {
    await withLab({ links }, async (lab) => {
      await deploy(lab, labSite(lab, { weights }));
      const results = await lab.openConnections(connections, { concurrency: 20 });

      expect(results.filter((r) => !r.ok).map((r) => r.error)).toEqual([]);
      const shares = lab.shares(results);
      const total = weights.reduce((a, b) => a + b, 0);
      lab.links.forEach((l, i) => expect(Math.abs(shares[l.name] - weights[i] / total)).toBeLessThanOrEqual(points / 100));
      expect(await unmarkedConnections(lab, lab.serverAddress)).toBe(0);
    });
  }, 300_000);
});

describeAsRoot("what the LAN sends to no uplink", () => {
  it("multicast and broadcast (mDNS, DHCP) take no slot of the split: connections in between still alternate 1:1", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1] }));
      // One connection, one datagram to 224.0.0.251 or 255.255.255.255, and so on: if each
      // datagram took a slot, every connection would land on the same link.
      const script = [
        "import socket",
        "for i in range(40):",
        `    socket.create_connection(("${lab.serverAddress}", 80), timeout=2).close()`,
        "    d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        "    d.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)",
        '    d.sendto(b"x", ("224.0.0.251", 5353) if i % 2 == 0 else ("255.255.255.255", 67))',
        "    d.close()",
      ].join("\n");
      await lab.exec(lab.ns.lan, ["python3", "-c", script], { check: true, timeoutMs: 30_000 });
      const marks = async (args: string[]) => {
        const r = await lab.exec(lab.ns.gw, ["conntrack", "-L", ...args]);
        return [...r.stdout.matchAll(/ mark=(\d+) /g)].map((m) => Number(m[1]));
      };
      const tcp = await marks(["-p", "tcp", "-d", lab.serverAddress]);
      const broadcast = await marks(["-d", "255.255.255.255"]);
      // Multicast the gateway has not joined never gets a confirmed entry, but it does pass the
      // classification (where a slot would go): the bypass rule's own counter shows it.
      const classify = (await lab.exec(lab.ns.gw, ["iptables", "-t", "mangle", "-nvxL", "MWAN-CLASSIFY"], { check: true })).stdout;
      const multicast = Number(/^\s*(\d+)\s+\d+\s+RETURN\s.*224\.0\.0\.0\/4/m.exec(classify)?.[1]);
      console.log(`alternating with datagrams: ${tcp.filter((m) => m === 0x100).length} on isp1, ${tcp.filter((m) => m === 0x200).length} on isp2; ${multicast} multicast datagrams returned unbalanced, ${broadcast.length} broadcast entries, marks ${[...new Set(broadcast)]}`);
      expect(tcp.length).toBe(40);
      expect(tcp.filter((m) => m === 0x100).length).toBe(20);
      expect(tcp.filter((m) => m === 0x200).length).toBe(20);
      expect(multicast).toBe(20);
      expect(broadcast.length).toBe(20);
      expect(broadcast.every((m) => m === 0)).toBe(true);
    });
  }, 60_000);
});
