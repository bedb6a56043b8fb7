// Tiers on real links: a backup (tier 2) carries nothing while a better tier lives, takes the new
// connections while none does, and gives them back when one returns; its failback decides what
// becomes of the connections it carried meanwhile.
import { expect, it } from "vitest";
import { readManifest } from "../../components/manifest";
import { withLab, type ConnectionResult, type Lab } from "../../lab/lab";
import { deploy, labSite } from "../../lab/deploy";
import { healthState } from "../../lab/failover";
import { healthLog, waitFor } from "./health";
import { describeAsRoot } from "../helpers/root";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FAST = { interval: 0.1, timeout: 0.25, down: 3, up: 10 };
/** A link that came back carries again within up × interval + 1 s. */
const BACK_MS = (FAST.up * FAST.interval + 1) * 1000;

const waitVariant = (lab: Lab, key: string) => waitFor(`variant ${key}`, () => healthState(lab)?.variant === key, 5000);

/** Conntrack entries of LAN flows (tcp, udp) whose mark is `fwmark` (`0x200/0xff00`). */
async function lanFlowsMarked(lab: Lab, fwmark: string): Promise<number> {
  const out = (await lab.exec(lab.ns.gw, ["conntrack", "-L", "-s", lab.lanInfo.network, "-m", fwmark], { check: true })).stdout;
  return out.split("\n").filter((l) => /^(tcp|udp) /.test(l)).length;
}

/** Milliseconds from `at` to the first connection started after it on `link`, and to the first after which every one is. */
function takeover(results: ConnectionResult[], at: number, link: string) {
  const after = results.filter((r) => r.startedAt >= at);
  const lastElsewhere = Math.max(at, ...after.filter((r) => r.link !== link).map((r) => r.startedAt));
  const all = after.filter((r) => r.startedAt > lastElsewhere);
  return {
    firstMs: Math.min(...after.filter((r) => r.link === link).map((r) => r.startedAt)) - at,
    allMs: Math.min(...all.map((r) => r.startedAt)) - at,
    allCount: all.length,
  };
}

describeAsRoot("tiers", () => {
  it("a tier-2 backup carries nothing while the primary lives, every new connection while it is broken, and none again once it is back", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { links: [{ tier: 1 }, { tier: 2 }], health: FAST }), { daemon: true });
      await waitVariant(lab, "isp1+isp2");
      const up = await lab.openConnections(1000);
      expect(up.filter((r) => !(r.ok && r.link === "isp1"))).toEqual([]);

      // A client that waits like a real one (5 s, the kernel's SYN retries), 20 new connections a second.
      const traffic = lab.openConnections(280, { ratePerSec: 20, concurrency: 200, connectTimeoutMs: 5000, durationLimitMs: 19_000 });
      await sleep(2000);
      await lab.breakUplink("isp1");
      const brokenAt = Date.now();
      await sleep(6000);
      const restoreAt = Date.now();
      await lab.restoreUplink("isp1");
      const results = await traffic;

      expect(results.filter((r) => !r.ok).map((r) => r.error)).toEqual([]);
      const during = results.filter((r) => r.startedAt > brokenAt && r.startedAt < restoreAt);
      expect(during.length).toBeGreaterThan(100);
      expect(during.filter((r) => r.link !== "isp2")).toEqual([]);
      // Those that started before the swap got through on a retried SYN (the first goes after 1 s).
      const retried = during.filter((r) => r.ms >= 900);
      const failoverMs = Math.max(0, ...retried.map((r) => r.startedAt - brokenAt));
      const back = takeover(results, restoreAt, "isp1");
      console.log(`primary + backup: 1000 of 1000 on isp1 while up; ${results.length} across the break, 0 failed, ${during.length} on isp2 during it (${retried.length} on a retried SYN, the last started ${failoverMs} ms after the break); after the restore: first on isp1 at ${back.firstMs} ms, all new on isp1 from ${back.allMs} ms (${back.allCount} connections)`);
      expect(failoverMs).toBeLessThanOrEqual(1000);
      expect(back.allMs).toBeLessThanOrEqual(BACK_MS);
      expect(back.allCount).toBeGreaterThan(60);
    });
  }, 90_000);

  for (const failback of ["keep", "move"] as const) {
    it(`failback ${failback}: flows opened on the backup during an outage ${failback === "keep" ? "stay on it after the recovery" : "are deleted at the recovery, and the UDP flow's next packets leave through tier 1"}`, async () => {
      await withLab({ links: 2 }, async (lab) => {
        const bundle = await deploy(lab, labSite(lab, { links: [{ tier: 1 }, { tier: 2, failback }], health: FAST }), { daemon: true });
        const backupMark = readManifest(bundle).links[1].fwmark;
        await waitVariant(lab, "isp1+isp2");
        await lab.breakUplink("isp1");
        await waitVariant(lab, "isp2");
        const udp = await lab.udpFlow({ intervalMs: 100, durationMs: 30_000 });
        const tcp = await lab.longLived(1, { intervalMs: 100, durationMs: 30_000 });
        await sleep(500);
        expect(await lanFlowsMarked(lab, backupMark)).toBe(2);

        const restoreAt = Date.now();
        await lab.restoreUplink("isp1");
        await waitVariant(lab, "isp1+isp2");
        const recoveredMs = Date.now() - restoreAt;
        // The daemon deletes (or keeps) them before it records the new variant.
        const atRecovery = await lanFlowsMarked(lab, backupMark);
        await sleep(1500);
        const flowsLeft = await lanFlowsMarked(lab, backupMark);
        const fresh = await lab.openConnections(20);
        const [datagrams, stream] = [await udp.stop(), await tcp.stop()];

        expect(fresh.filter((r) => !(r.ok && r.link === "isp1"))).toEqual([]);
        expect(stream.connections[0].link).toBe("isp2");
        const repliesBefore = datagrams.replies.filter((r) => r.at < restoreAt);
        const repliesAfter = datagrams.replies.filter((r) => r.at > restoreAt + recoveredMs + 200);
        expect([repliesBefore.length, repliesAfter.length].every((n) => n > 5)).toBe(true);
        expect(new Set(repliesBefore.map((r) => r.link))).toEqual(new Set(["isp2"]));
        console.log(`failback ${failback}: tier 1 back ${recoveredMs} ms after the restore; the backup's LAN flows in conntrack: 2 before, ${atRecovery} at the recovery, ${flowsLeft} 1.5 s later; UDP replies after it from ${[...new Set(repliesAfter.map((r) => r.link))]}; TCP flow: ${stream.connections[0].error ?? (stream.connections[0].stable ? "stable" : "moved")}`);
        expect([atRecovery, flowsLeft]).toEqual(failback === "keep" ? [2, 2] : [0, 0]);
        if (failback === "keep") {
          expect(new Set(datagrams.replies.map((r) => r.link))).toEqual(new Set(["isp2"]));
          expect(stream.connections[0]).toMatchObject({ link: "isp2", stable: true, closedByPeer: false });
          expect(stream.errored || stream.stalled).toBe(false);
        } else {
          expect(repliesAfter.every((r) => r.link === "isp1")).toBe(true);
          expect(healthLog(lab)).toMatch(/link isp2: a better tier is back; its LAN connections were deleted \(failback move\)/);
        }
      });
    }, 60_000);
  }

  it("two tier-1 links 1:1 and a tier-2 backup: 50/50/0, 0/100/0 with isp1 broken, 0/0/100 with both broken", async () => {
    await withLab({ links: 3 }, async (lab) => {
      await deploy(lab, labSite(lab, { links: [{ tier: 1 }, { tier: 1 }, { tier: 2 }], health: FAST }), { daemon: true });
      const measure = async (variant: string) => {
        await waitVariant(lab, variant);
        const results = await lab.openConnections(400);
        expect(results.filter((r) => !r.ok).map((r) => r.error)).toEqual([]);
        const shares = lab.shares(results);
        console.log(`tiers 1/1/2, live ${variant}: ${JSON.stringify(shares)} of ${results.length}`);
        return shares;
      };
      expect(await measure("isp1+isp2+isp3")).toEqual({ isp1: 0.5, isp2: 0.5, isp3: 0 });
      await lab.breakUplink("isp1");
      expect(await measure("isp2+isp3")).toEqual({ isp1: 0, isp2: 1, isp3: 0 });
      await lab.breakUplink("isp2");
      expect(await measure("isp3")).toEqual({ isp1: 0, isp2: 0, isp3: 1 });
      await lab.restoreUplink("isp1");
      await lab.restoreUplink("isp2");
      expect(await measure("isp1+isp2+isp3")).toEqual({ isp1: 0.5, isp2: 0.5, isp3: 0 });
    });
  }, 60_000);
});
