// Passive detection on real links: with the default probe profile, the daemon reads the LAN's
// new TCP connections per link from conntrack's events and confirms a link whose connections stop
// being answered with a ping burst, long before three probe rounds have failed.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { withLab, type Lab } from "../../lab/lab";
import { deploy, labSite } from "../../lab/deploy";
import { allCarrying, healthState, outageRun } from "../../lab/failover";
import { healthLog, waitFor } from "./health";
import { describeAsRoot } from "../helpers/root";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DEFAULTS = { interval: 0.5, timeout: 1, down: 3, up: 5 };
const RUNS = 10;
const BOUND_MS = 1000;

const isp1 = (lab: Lab) => healthState(lab)?.links[0];

describeAsRoot("passive detection", () => {
  it(`default probes, 20 new connections/s: after an upstream break new connections succeed again within ${BOUND_MS} ms, and a client with a 5 s connect timeout loses none (${RUNS} runs)`, async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1], health: DEFAULTS }), { daemon: true });
      await allCarrying(lab);
      const figures: string[] = [];
      for (let run = 1; run <= RUNS; run++) {
        const r = await outageRun(lab);
        figures.push(`run ${run}: down ${r.downAfterMs} ms, recovered ${r.recoveryMs} ms after the break, ${r.failed} of ${r.connections} 1 s clients failed, ${r.lost} of ${r.patient} 5 s clients lost`);
        console.log(figures[figures.length - 1]);
        expect(r.recoveryMs, figures.join("\n")).toBeLessThanOrEqual(BOUND_MS);
        expect(r.lost, figures.join("\n")).toBe(0);
      }
      expect(healthLog(lab).match(/link isp1 down \(passive: /g)?.length).toBe(RUNS);
    });
  }, 300_000);

  it("with no traffic the probes decide, within their 3 rounds", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1], health: DEFAULTS }), { daemon: true });
      await allCarrying(lab);
      const breakAt = Date.now();
      await lab.breakUplink("isp1");
      await waitFor("isp1 down", () => isp1(lab)?.status === "down", 6000);
      const downAfter = isp1(lab)!.since - breakAt;
      console.log(`no traffic: isp1 down ${downAfter} ms after the break`);
      expect(downAfter).toBeLessThanOrEqual(3000);
      expect(healthLog(lab)).toMatch(/link isp1 down \(\d of \d needed targets answered/);
      expect(healthLog(lab)).not.toMatch(/passive/);
      // ... though it was watching all along.
      const metrics = readFileSync(join(lab.root, "var/lib/prometheus/node-exporter/multiwan.prom"), "utf8");
      expect(metrics).toMatch(/^multiwan_passive_watching\{gateway="labgw"\} 1$/m);
    });
  }, 60_000);

  it("100 connections/s to one destination that never answers, through link 1, and clients knocking on closed ports: link 1 stays up", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const dead = lab.serverAddresses.secondary;
      const balance = { policies: [{ name: "dead", match: { destinations: [`${dead}/32`] }, links: ["isp1"] }] };
      await deploy(lab, labSite(lab, { weights: [1, 1], health: DEFAULTS, balance }), { daemon: true });
      await allCarrying(lab);
      // isp1's router drops what it would forward to that one address: its SYNs go unanswered.
      await lab.exec(lab.ns.isp1, ["iptables", "-I", "FORWARD", "1", "-d", dead, "-j", "DROP"], { check: true });
      const before = isp1(lab)!.transitions;
      let seenDown = false;
      let stop = false;
      const watching = (async () => {
        for (let i = 0; i < 400 && !stop; i++) {
          if (isp1(lab)?.status !== "up") seenDown = true;
          await sleep(50);
        }
      })();

      // With other traffic answered on both links, and with the dead destination's alone.
      const [toDead, others, refused] = await Promise.all([
        lab.openConnections(400, { dst: dead, ratePerSec: 100, concurrency: 200, connectTimeoutMs: 1000 }),
        lab.openConnections(80, { ratePerSec: 20, concurrency: 50 }),
        lab.openConnections(200, { port: 9, ratePerSec: 50, concurrency: 50 }),
      ]);
      const alone = await lab.openConnections(400, { dst: dead, ratePerSec: 100, concurrency: 200, connectTimeoutMs: 1000 });
      stop = true;
      await watching;
      const log = healthLog(lab);
      console.log(`dead destination: ${toDead.filter((r) => r.ok).length + alone.filter((r) => r.ok).length} of ${toDead.length + alone.length} answered; others ${others.filter((r) => r.ok).length}/${others.length} ok; closed port ${refused.filter((r) => r.ok).length}/${refused.length}; bursts answered: ${log.match(/stays up/g)?.length ?? 0}`);
      expect(toDead.some((r) => r.ok) || alone.some((r) => r.ok)).toBe(false);
      expect(others.every((r) => r.ok)).toBe(true);
      expect(seenDown).toBe(false);
      expect(isp1(lab)!.transitions).toBe(before);
      // Alone, the dead destination's SYNs do make isp1 suspect: the burst's answers keep it up.
      expect(log).toMatch(/link isp1: 3 new connections unanswered for 250 ms, but \d of its targets answered a burst in \d+ ms: it stays up/);
      expect(log).not.toMatch(/link isp1 down/);
    });
  }, 120_000);
});
