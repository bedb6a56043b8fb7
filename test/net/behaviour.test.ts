// What users are promised besides the split: sticky flows, exclusions, port selection, inbound.
import { expect, it } from "vitest";
import { withLab } from "../../lab/lab";
import { deploy, labSite } from "../../lab/deploy";
import { describeAsRoot } from "../helpers/root";

describeAsRoot("on a real gateway", () => {
  it("keeps long-lived connections on their link while new connections are balanced around them", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1] }));
      const flows = await lab.longLived(20, { intervalMs: 50, durationMs: 20_000 });
      expect(flows.established).toBe(20);
      const churn = await lab.openConnections(600, { ratePerSec: 150, concurrency: 20 });
      const report = await flows.stop();

      expect(churn.every((r) => r.ok)).toBe(true);
      expect(report.errored).toBe(false);
      expect(report.stalled).toBe(false);
      for (const c of report.connections) {
        expect(c.stable, `connection seen as ${[...new Set(c.seen)].join(", ")}`).toBe(true);
        expect(c.answered).toBeGreaterThan(20);
      }
      // Both links carry long-lived flows, so a wrong restore would have shown up as a change.
      expect(new Set(report.connections.map((c) => c.link))).toEqual(new Set(["isp1", "isp2"]));
    });
  });

  it("sends excluded destinations through the main table only", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const excluded = lab.serverAddresses.secondary;
      await deploy(lab, labSite(lab, { weights: [1, 3], balance: { exclude: [`${excluded}/32`] } }));
      const toExcluded = await lab.openConnections(200, { dst: excluded });
      const toBalanced = await lab.openConnections(200);

      expect(toExcluded.every((r) => r.ok && r.link === "isp1")).toBe(true); // the main default route
      expect(lab.shares(toBalanced).isp2).toBeCloseTo(0.75, 2);
    });
  });

  it("balances only the selected ports (seed 2: tcp 22, 25, 80, 443)", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1], balance: { protocols: ["tcp"], ports: [22, 25, 80, 443] } }));
      for (const port of [22, 25, 80, 443]) {
        expect(lab.shares(await lab.openConnections(100, { port })), `port ${port}`).toEqual({ isp1: 0.5, isp2: 0.5 });
      }
      for (const port of [8080, 5001]) {
        const results = await lab.openConnections(100, { port });
        expect(results.every((r) => r.ok && r.link === "isp1"), `port ${port}`).toBe(true);
      }
    });
  });

  it("answers an inbound connection through the link it arrived on", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1] }));
      const link2 = lab.links[1];
      // A service on the gateway itself, reached on link 2's address (main default is link 1).
      const onGateway = await lab.listen(lab.ns.gw, { port: 2222, address: link2.address });
      // A LAN server behind a port forward that the host already had on link 2.
      const onLan = await lab.listen(lab.ns.lan, { port: 8022 });
      await lab.exec(lab.ns.gw, ["iptables", "-t", "nat", "-A", "PREROUTING", "-i", link2.interface, "-p", "tcp", "--dport", "8022",
        "-j", "DNAT", "--to-destination", `${lab.lanInfo.clientAddress}:8022`], { check: true });
      try {
        for (let i = 0; i < 20; i++) {
          expect((await lab.connectFromServer({ dst: link2.address, port: 2222 })).ok).toBe(true);
          expect((await lab.connectFromServer({ dst: link2.address, port: 8022 })).ok).toBe(true);
        }
        expect(onLan.peers()).toHaveLength(20);
      } finally {
        await onGateway.stop();
        await onLan.stop();
      }
    });
  });

  it("without inbound stickiness the port forward on link 2 fails: the test can tell", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1], balance: { inboundSticky: false } }));
      const link2 = lab.links[1];
      const onLan = await lab.listen(lab.ns.lan, { port: 8022 });
      await lab.exec(lab.ns.gw, ["iptables", "-t", "nat", "-A", "PREROUTING", "-i", link2.interface, "-p", "tcp", "--dport", "8022",
        "-j", "DNAT", "--to-destination", `${lab.lanInfo.clientAddress}:8022`], { check: true });
      try {
        expect((await lab.connectFromServer({ dst: link2.address, port: 8022, connectTimeoutMs: 1000 })).ok).toBe(false);
      } finally {
        await onLan.stop();
      }
    });
  });
});
