// Failover measured on real links: uplink 1 dies upstream (its interface stays up) while the LAN
// opens about 20 new connections per second.
import { existsSync, readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { withLab, type Lab } from "../../lab/lab";
import { deploy, labSite, runApply, renderLabBundle } from "../../lab/deploy";
import { healthState, recoveryMs } from "../../lab/failover";
import { healthLog, waitFor } from "./health";
import { describeAsRoot } from "../helpers/root";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DEFAULTS = { interval: 0.5, timeout: 1, down: 3, up: 5 };
const FAST = { interval: 0.1, timeout: 0.25, down: 3, up: 10 };


async function outage(lab: Lab, o: { connectTimeoutMs: number; beforeMs: number; outageMs: number; afterMs: number }) {
  const total = o.beforeMs + o.outageMs + o.afterMs;
  const traffic = lab.openConnections(Math.round((total / 1000) * 20), {
    ratePerSec: 20,
    concurrency: 200,
    connectTimeoutMs: o.connectTimeoutMs,
    durationLimitMs: total + 5000,
  });
  await sleep(o.beforeMs);
  const breakAt = Date.now();
  await lab.breakUplink("isp1");
  await sleep(o.outageMs);
  const restoreAt = Date.now();
  await lab.restoreUplink("isp1");
  const results = await traffic;
  return { results, breakAt, restoreAt };
}

describeAsRoot("failover", () => {
  for (const [profile, health, bound] of [["default", DEFAULTS, 3000], ["fast", FAST, 1000]] as const) {
    it(`with the ${profile} profile, new connections succeed again within ${bound / 1000} s of an upstream break`, async () => {
      await withLab({ links: 2 }, async (lab) => {
        await deploy(lab, labSite(lab, { weights: [1, 1], health }), { daemon: true });
        await waitFor("the daemon's first state", () => healthState(lab) !== undefined, 5000);
        const udp = await lab.udpFlow({ intervalMs: 100, durationMs: 60_000 });
        const onLink2 = await lab.longLived(6, { intervalMs: 100, durationMs: 60_000 });
        const { results, breakAt, restoreAt } = await outage(lab, { connectTimeoutMs: 1000, beforeMs: 3000, outageMs: 8000, afterMs: 8000 });
        const flows = await onLink2.stop();
        const datagrams = await udp.stop();

        const recovery = recoveryMs(results, breakAt);
        const failed = results.filter((r) => !r.ok).length;
        console.log(`${profile}: recovered ${recovery} ms after the break, ${failed} of ${results.length} connections failed`);
        expect(recovery).toBeLessThanOrEqual(bound);

        // During the outage, after detection: everything new uses the live link.
        const during = results.filter((r) => r.startedAt > breakAt + bound && r.startedAt < restoreAt);
        expect(during.length).toBeGreaterThan(50);
        expect(during.every((r) => r.ok && r.link === "isp2")).toBe(true);

        // After the restore: the link carries its share again within up × interval + 1 s.
        const back = restoreAt + (health.up * health.interval + 1) * 1000;
        const after = results.filter((r) => r.startedAt > back);
        expect(after.length).toBeGreaterThan(40);
        expect(after.every((r) => r.ok)).toBe(true);
        expect(lab.shares(after).isp1).toBeGreaterThanOrEqual(0.45);

        // Flows on link 2 never noticed; the UDP flow that was on link 1 moved to link 2.
        const survivors = flows.connections.filter((c) => c.link === "isp2");
        expect(survivors.length).toBeGreaterThan(0);
        for (const c of survivors) expect(c.error ?? (c.stable && !c.closedByPeer)).toBe(true);
        const udpLinks = datagrams.replies.map((r) => r.link);
        if (udpLinks[0] === "isp1") expect(udpLinks.filter((l, i) => i > 0 && l !== udpLinks[i - 1])).toEqual(["isp2"]);
        else expect(new Set(udpLinks)).toEqual(new Set(["isp2"]));

        expect(healthLog(lab)).toMatch(/link isp1 down/);
        expect(healthLog(lab)).toMatch(/link isp1 up/);
      });
    }, 120_000);
  }

  it("a client that waits like a real one (5 s, kernel SYN retries) loses no connection across the break", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1], health: { ...DEFAULTS, flushConntrack: true } }), { daemon: true });
      await waitFor("the daemon's first state", () => healthState(lab) !== undefined, 5000);
      const { results } = await outage(lab, { connectTimeoutMs: 5000, beforeMs: 2000, outageMs: 8000, afterMs: 2000 });
      expect(results.filter((r) => !r.ok).map((r) => r.error)).toEqual([]);
    });
  }, 120_000);

  it("without flushConntrack the UDP flow stays on the dead link: the flush is what moves it", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1], health: { ...FAST, flushConntrack: false } }), { daemon: true });
      await waitFor("the daemon's first state", () => healthState(lab) !== undefined, 5000);
      // The split alternates exactly, so of two flows one starts on link 1.
      const flows = [await lab.udpFlow({ intervalMs: 100 }), await lab.udpFlow({ intervalMs: 100 })];
      await sleep(500);
      await lab.breakUplink("isp1");
      await waitFor("isp1 down", () => healthState(lab)?.links[0].status === "down", 5000);
      const downAt = Date.now();
      await sleep(2000);
      const reports = await Promise.all(flows.map((f) => f.stop()));

      const stuck = reports.find((r) => r.replies[0]?.link === "isp1")!;
      expect(stuck).toBeDefined();
      expect(stuck.replies.filter((r) => r.at > downAt)).toEqual([]);
    });
  }, 60_000);

  it("with every link down it falls back to the planned last resort, and recovers", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [3, 1], health: FAST }), { daemon: true });
      const balancing = async () => (await lab.sh(lab.ns.gw, "iptables-save -t mangle | grep '^-A MWAN-BALANCE'", { check: true })).stdout;
      const full = await balancing();
      await lab.breakUplink("isp1");
      await lab.breakUplink("isp2");
      await waitFor("every link down", () => healthState(lab)?.variant === "none", 5000);
      expect(healthState(lab)!.links.map((l) => l.status)).toEqual(["down", "down"]);
      expect(await balancing()).toBe(full); // lastResort "all": keep balancing, no blackhole
      await lab.restoreUplink("isp2");
      await waitFor("isp2 back", () => healthState(lab)?.variant === "isp2", 5000);
      expect((await lab.openConnections(40)).every((r) => r.ok && r.link === "isp2")).toBe(true);
      await lab.restoreUplink("isp1");
      await waitFor("isp1 back", () => healthState(lab)?.variant === "isp1+isp2", 5000);
      expect(lab.shares(await lab.openConnections(400))).toEqual({ isp1: 0.75, isp2: 0.25 });
    });
  }, 60_000);

  it("losing one probe in three does not take a link down", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { health: FAST }), { daemon: true });
      await waitFor("the daemon's first state", () => healthState(lab) !== undefined, 5000);
      await lab.sh(lab.ns.isp1, "iptables -I FORWARD -p icmp --icmp-type echo-request -m statistic --mode nth --every 3 --packet 0 -j DROP", { check: true });
      await sleep(6000);
      const dropped = (await lab.sh(lab.ns.isp1, "iptables -L FORWARD -v -n -x | awk '/statistic/ { print $1 }'", { check: true })).stdout.trim();
      expect(Number(dropped)).toBeGreaterThan(10);
      const state = healthState(lab)!;
      expect(state.links.map((l) => l.status)).toEqual(["up", "up"]);
      expect(healthLog(lab)).not.toMatch(/down/);
    });
  }, 60_000);

  it("a restarted daemon picks up the current state without disturbing traffic", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const site = labSite(lab, { weights: [1, 1], health: FAST });
      await deploy(lab, site, { daemon: true });
      await lab.breakUplink("isp1");
      await waitFor("isp1 down", () => healthState(lab)?.links[0].status === "down", 5000);
      const traffic = lab.openConnections(100, { ratePerSec: 20, connectTimeoutMs: 1000 });
      await sleep(1000);
      // Killed hard, then started again the way systemd's Restart=always or a re-apply would.
      await lab.sh(lab.ns.gw, `kill -9 $(cat ${lab.root}/run/multiwan/health.pid)`, { check: true });
      expect((await runApply(lab, renderLabBundle(site), "apply", { daemon: true })).code).toBe(0);
      const results = await traffic;

      expect(results.every((r) => r.ok && r.link === "isp2")).toBe(true);
      expect(healthState(lab)!.variant).toBe("isp2");
      const split = (await lab.sh(lab.ns.gw, "iptables-save -t mangle | grep '^-A MWAN-BALANCE'")).stdout;
      expect(split).toContain("0x200/0xff00");
      expect(split).not.toMatch(/0x100\/0xff00|MWAN-MARK-1/);
    });
  }, 60_000);
});

describeAsRoot("the health unit's command line", () => {
  it("run with its installed paths under MULTIWAN_ROOT, keeps the daemon in the foreground on those files", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const site = labSite(lab, { weights: [1, 1], health: FAST });
      delete (site.gateways[0] as { root?: string }).root; // default root "/": MULTIWAN_ROOT moves it
      const hooks = `${lab.root}/etc/multiwan-hooks.d`;
      await lab.sh(lab.ns.gw, `mkdir -p ${hooks} && printf '#!/bin/sh\\necho "$1 $2" >> ${lab.root}/transitions\\n' > ${hooks}/record && chmod +x ${hooks}/record`, { check: true });
      await deploy(lab, site); // MULTIWAN_NO_SYSTEMD=1: the caller runs the daemon
      const unit = readFileSync(`${lab.root}/etc/systemd/system/multiwan-health.service`, "utf8");
      const execStart = /^ExecStart=(.*)$/m.exec(unit)![1].split(" ");
      const argv = execStart.map((word) => (word.startsWith("/") && existsSync(lab.root + word) ? lab.root + word : word));
      expect(argv).toEqual(["/bin/sh", `${lab.root}/etc/multiwan/health.sh`]);

      const daemon = lab.spawn(lab.ns.gw, argv, { env: { ...process.env, MULTIWAN_ROOT: lab.root } });
      await waitFor("the daemon's first state", () => healthState(lab) !== undefined, 5000);
      await lab.breakUplink("isp1");
      await waitFor("isp1 down", () => healthState(lab)?.links[0].status === "down", 5000);
      expect((await lab.openConnections(50)).every((r) => r.ok && r.link === "isp2")).toBe(true);
      await lab.restoreUplink("isp1");
      await waitFor("isp1 up", () => healthState(lab)?.links[0].status === "up", 5000);
      await waitFor("both hooks ran", () => existsSync(`${lab.root}/transitions`) && readFileSync(`${lab.root}/transitions`, "utf8").split("\n").length > 2, 3000);
      expect(readFileSync(`${lab.root}/transitions`, "utf8")).toBe("isp1 down\nisp1 up\n");
      expect(daemon.pid).toBeGreaterThan(0);
    });
  }, 60_000);
});
