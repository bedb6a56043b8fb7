// `multiwan status` against a real gateway: the health daemon and real netfilter in a lab namespace,
// the status command run inside the gateway's namespace (what its sshd would run). Long-lived LAN
// connections show up per link with the weights' shares; a broken uplink shows as down with a fresh
// `since`.
import { expect, it } from "vitest";
import { parseStatus, statusCommand, type GatewayStatus, type StatusInputs } from "../../components/status";
import { withLab, type Lab } from "../../lab/lab";
import { deploy, labSite } from "../../lab/deploy";
import { healthState } from "../../lab/failover";
import { waitFor } from "./health";
import { describeAsRoot } from "../helpers/root";

const FAST = { interval: 0.1, timeout: 0.25, down: 3, up: 10 };

async function statusOf(lab: Lab, inputs: StatusInputs): Promise<GatewayStatus> {
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
});
