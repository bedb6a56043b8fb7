// `multiwan status` against a real gateway: the health daemon and real netfilter in a lab namespace,
// the status command run inside the gateway's namespace (what its sshd would run). Long-lived LAN
// connections show up per link with the weights' shares; a broken uplink shows as down with a fresh
// `since`; forwarding turned off and a frozen daemon are named, never shown as fine.
import { expect, it } from "vitest";
import { statusExitCode, statusTable } from "../../cli/status";
import { parseStatus, staleAfterMs, statusCommand, type GatewayStatus } from "../../components/status";
import type { GatewayProbe } from "../../components/probe-protocol";
import { withLab, type Lab } from "../../lab/lab";
import { deploy, labSite } from "../../lab/deploy";
import { healthState } from "../../lab/failover";
import { waitFor } from "./health";
import { describeAsRoot } from "../helpers/root";

const FAST = { interval: 0.1, timeout: 0.25, down: 3, up: 10 };

async function statusOf(lab: Lab, inputs: GatewayProbe): Promise<GatewayStatus> {
  return parseStatus((await lab.sh(lab.ns.gw, statusCommand(inputs), { check: true, timeoutMs: 5000 })).stdout, inputs.files);
}

describeAsRoot("status of a real gateway", () => {
  it("shows links up with connection shares near the weights, then a broken uplink down since the break", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const site = labSite(lab, { weights: [3, 1], health: FAST });
      const files = await deploy(lab, site, { daemon: true });
      const inputs = { files, root: lab.root };
      await waitFor("the daemon's first state", () => healthState(lab) !== undefined, 5000);

      const conns = await lab.longLived(12, { durationMs: 20_000 });
      expect(conns.established).toBe(12);
      const before = await statusOf(lab, inputs);
      expect(before).toMatchObject({ reachable: true, daemon: "running", variant: "isp1+isp2" });
      expect(before.links.map((l) => [l.name, l.status])).toEqual([["isp1", "up"], ["isp2", "up"]]);
      // 12 new connections through the 4-slot round: exactly 9 and 3. The daemon's ICMP probes carry
      // the links' marks too but are not connections.
      const [isp1, isp2] = before.links;
      expect([isp1.connections, isp2.connections]).toEqual([9, 3]);
      expect(before.total).toBe(12);
      expect([isp1.share, isp2.share]).toEqual([0.75, 0.25]);

      const broke = Date.now();
      await lab.breakUplink("isp2");
      let after = await statusOf(lab, inputs);
      for (const deadline = Date.now() + 8000; after.links[1].status !== "down"; after = await statusOf(lab, inputs)) {
        if (Date.now() > deadline) throw new Error(`isp2 still ${after.links[1].status} 8 s after the break`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(after.links[0].status).toBe("up");
      expect(after.variant).toBe("isp1");
      const since = after.links[1].since!.getTime();
      expect(since).toBeGreaterThanOrEqual(broke - 1000); // the daemon's clock is this machine's
      expect(since).toBeLessThanOrEqual(Date.now());
      expect(after.links[1].connections).toBe(0); // flushConntrack: the dead link's entries are gone
      await conns.stop();
    });
  }, 60_000);

  it("exits 2 naming the cause when forwarding is off or the daemon is frozen", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const files = await deploy(lab, labSite(lab, { health: FAST }), { daemon: true });
      const inputs = { files, root: lab.root };
      await waitFor("the daemon's first state", () => healthState(lab) !== undefined, 5000);
      const report = async () => {
        const row = { gateway: "gw1", ...(await statusOf(lab, inputs)) };
        return { row, code: statusExitCode([row]), table: statusTable([row]) };
      };
      expect((await report()).code).toBe(0);

      await lab.sh(lab.ns.gw, "sysctl -q -w net.ipv4.ip_forward=0", { check: true });
      const off = await report();
      expect(off.code).toBe(2);
      expect(off.table).toContain("gw1: net.ipv4.ip_forward is 0 (the rules need 1): the LAN is offline");
      await lab.sh(lab.ns.gw, "sysctl -q -w net.ipv4.ip_forward=1", { check: true });
      expect((await report()).code).toBe(0);

      const pid = (await lab.sh(lab.ns.gw, `cat ${lab.root}/run/multiwan/health.pid`, { check: true })).stdout.trim();
      await lab.sh(lab.ns.gw, `kill -STOP ${pid}`, { check: true });
      try {
        await new Promise((r) => setTimeout(r, staleAfterMs(FAST.interval) + 500));
        const frozen = await report();
        expect(frozen.code).toBe(2);
        expect(frozen.row).toMatchObject({ daemon: "stale", links: [{ status: "unknown" }, { status: "unknown" }] });
        expect(frozen.table).toMatch(/gw1: health daemon stale: state written [23]s ago \(interval 0\.1 s\)/);
      } finally {
        await lab.sh(lab.ns.gw, `kill -CONT ${pid}`);
      }
      await waitFor("the daemon's next state", () => Date.now() - (healthState(lab)?.updated ?? 0) < 1000, 5000);
      expect((await report()).code).toBe(0);
    });
  }, 60_000);
});
