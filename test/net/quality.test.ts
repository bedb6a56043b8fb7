// Link quality and metrics on real links: uplink 1's probes answered late or lost (the lab delays
// and drops echoes only, which is all the probes time), and the Prometheus text file the daemon
// keeps, read the way node_exporter would.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { withLab, type Lab } from "../../lab/lab";
import { deploy, labSite } from "../../lab/deploy";
import { healthState } from "../../lab/failover";
import { healthLog, waitFor } from "./health";
import { describeAsRoot } from "../helpers/root";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// Probes wait up to 1 s, so an answer 400 ms late is slow, not lost; down: 5 allows that timeout.
const SLOW = { interval: 0.2, timeout: 1, down: 5, up: 5 };
const LATENCY = { latencyMs: 200, window: 5 };
/** How long the daemon may take to judge a change: a full window of rounds, plus a second. */
const JUDGED_MS = (LATENCY.window * SLOW.interval + 1) * 1000;
const FAST = { interval: 0.1, timeout: 0.25, down: 3, up: 10 };

async function deployed(lab: Lab, health: Record<string, unknown>, links?: Record<string, unknown>[]) {
  await deploy(lab, labSite(lab, { health, links }), { daemon: true });
  await waitFor("the daemon's first state", () => healthState(lab) !== undefined, 5000);
}

/** isp1's entry of state.json once `status`, with the state it was read from; throws after `timeoutMs`. */
async function linkBecomes(lab: Lab, status: string, timeoutMs: number) {
  await waitFor(`isp1 ${status}`, () => healthState(lab)?.links[0].status === status, timeoutMs);
  const state = healthState(lab)!;
  return { state, isp1: state.links[0] };
}

/** The daemon's Prometheus text file at its default place under the gateway's root. */
const metricsFile = (lab: Lab) => join(lab.root, "var/lib/prometheus/node-exporter/multiwan.prom");
const readMetrics = (lab: Lab) => readFileSync(metricsFile(lab), "utf8");

/** The value of the one series of `name` whose labels include `labels`; NaN when there is none. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  const found = text.split("\n").flatMap((line) => {
    const m = /^(\w+)\{(.*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) return [];
    const has = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    return Object.entries(labels).every(([k, v]) => has[k] === v) ? [Number(m[3])] : [];
  });
  if (found.length > 1) throw new Error(`${found.length} series of ${name} match ${JSON.stringify(labels)}`);
  return found[0] ?? NaN;
}

const ms = (us: number) => `${(us / 1000).toFixed(1)} ms`;

describeAsRoot("link quality", () => {
  it("400 ms added to a link's round trips degrades it within a window, new connections avoid it, its flows stay; it returns once the delay goes", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deployed(lab, { ...SLOW, quality: LATENCY });
      // The split alternates exactly, so of two flows one starts on link 1.
      const flows = [await lab.udpFlow({ intervalMs: 100 }), await lab.udpFlow({ intervalMs: 100 })];
      await sleep(500);

      await lab.impairEchoes("isp1", { delayMs: 400 });
      const slowFrom = Date.now();
      const degraded = await linkBecomes(lab, "degraded", 5000);
      const toDegraded = degraded.isp1.since - slowFrom;
      expect(degraded.state.variant).toBe("isp2");
      await sleep(JUDGED_MS); // a window of slow rounds only
      const during = await lab.openConnections(40);
      const slow = healthState(lab)!.links[0];
      const rtt = metric(readMetrics(lab), "multiwan_link_rtt_seconds", { link: "isp1" });

      const fastFrom = Date.now(); // the kernel answers at once from the call's first step
      await lab.impairEchoes("isp1", {});
      const back = await linkBecomes(lab, "up", 5000);
      const toUp = back.isp1.since - fastFrom;
      const after = await lab.openConnections(40);
      const reports = await Promise.all(flows.map((f) => f.stop()));

      console.log(`latency: degraded ${toDegraded} ms after 400 ms were added (window mean ${ms(slow.window.rttUs)}, metric ${rtt} s), up ${toUp} ms after they went; bound ${JUDGED_MS} ms`);
      expect(toDegraded).toBeLessThanOrEqual(JUDGED_MS);
      expect(toUp).toBeLessThanOrEqual(JUDGED_MS);
      expect(slow.status).toBe("degraded");
      expect(slow.window.rttUs).toBeGreaterThan(390_000);
      expect(rtt).toBeGreaterThan(0.39);
      expect(rtt).toBeLessThan(0.45);
      expect(during.every((r) => r.ok && r.link === "isp2")).toBe(true);
      expect(back.state.variant).toBe("isp1+isp2");
      expect(after.every((r) => r.ok)).toBe(true);
      expect(lab.shares(after).isp1).toBeGreaterThanOrEqual(0.4);

      // quality.flushConntrack is off by default: the flow on link 1 was answered there throughout.
      const onIsp1 = reports.find((r) => r.replies[0]?.link === "isp1")!;
      expect(onIsp1).toBeDefined();
      expect(onIsp1.replies.filter((r) => r.at > degraded.isp1.since).length).toBeGreaterThan(10);
      expect(new Set(onIsp1.replies.map((r) => r.link))).toEqual(new Set(["isp1"]));

      expect(back.isp1.transitions).toBe(2);
      expect(healthLog(lab)).toMatch(/link isp1 degraded/);
      expect(healthLog(lab)).not.toMatch(/link isp1 down/);
    });
  }, 60_000);

  it("30 % of a link's probes lost degrades it (lossPercent 20), and it returns once the loss stops", async () => {
    await withLab({ links: 2 }, async (lab) => {
      // Loss is chance, so the figures are chosen for it: 2 targets × 10 rounds = 20 probes a window,
      // degraded at more than 4 lost (> 20 %), 6 expected. A window at 30 % loses ≤ 4 with p = 0.24,
      // and 7 disjoint windows fit in the 15 s allowed: no degradation by then with p < 0.24^7 = 4e-5.
      // A round fails only when both probes are lost (p = 0.09) and down takes 5 in a row: ~6e-4
      // over 100 rounds. Once the loss stops, the window is clean, so the recovery is certain.
      const targets = [lab.serverAddresses.probe, lab.serverAddresses.secondary];
      const quality = { lossPercent: 20, window: 10 };
      await deployed(lab, { ...SLOW, timeout: 0.5, quality }, lab.links.map(() => ({ check: { targets } })));

      await lab.impairEchoes("isp1", { lossPercent: 30 });
      const lossyFrom = Date.now();
      const degraded = await linkBecomes(lab, "degraded", 15_000);
      expect(degraded.state.variant).toBe("isp2");

      const cleanFrom = Date.now();
      const lastLossy = healthState(lab)!;
      await lab.impairEchoes("isp1", {});
      const back = await linkBecomes(lab, "up", 10_000);
      const toUp = back.isp1.since - cleanFrom;
      // Counted in the daemon's rounds, whose period grows with its own work on a loaded box.
      const roundsToUp = back.state.rounds! - lastLossy.rounds!;
      const after = await lab.openConnections(40);

      // The figures of the round that degraded it, from its log line (state.json may be read a round later).
      const [, answered, sent] = (/link isp1 degraded \(.*window: (\d+) of (\d+) answered/.exec(healthLog(lab)) ?? []).map(Number);
      console.log(`loss: degraded ${degraded.isp1.since - lossyFrom} ms after 30 % loss began (window: ${answered} of ${sent} answered, ${(100 * (sent - answered)) / sent} % lost), up ${toUp} ms (${roundsToUp} rounds) after it stopped`);
      expect(sent).toBe(20);
      expect((sent - answered) / sent).toBeGreaterThan(0.2);
      // The lossy rounds slide out of the window; up to 2 more were already under way, and each
      // state read may be a round behind.
      expect(roundsToUp).toBeLessThanOrEqual(quality.window + 3);
      expect(back.state.variant).toBe("isp1+isp2");
      expect(after.every((r) => r.ok)).toBe(true);
      expect(lab.shares(after).isp1).toBeGreaterThanOrEqual(0.4);
      expect(healthLog(lab)).not.toMatch(/link isp1 down/);
    });
  }, 60_000);

  it("100 ms added, below latencyMs 200, changes nothing over several windows", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deployed(lab, { ...SLOW, quality: LATENCY });
      await lab.impairEchoes("isp1", { delayMs: 100 });
      await sleep(3 * JUDGED_MS);
      const state = healthState(lab)!;

      console.log(`below the limit: window mean ${ms(state.links[0].window.rttUs)} on isp1, ${ms(state.links[1].window.rttUs)} on isp2`);
      // The delay is there (the daemon sees it), and judged within the limit.
      expect(state.links[0].window.rttUs).toBeGreaterThan(95_000);
      expect(state.links[0].window.rttUs).toBeLessThan(150_000);
      expect(state.links.map((l) => [l.status, l.transitions])).toEqual([["up", 0], ["up", 0]]);
      expect(state.variant).toBe("isp1+isp2");
      expect(healthLog(lab)).not.toMatch(/degraded|down/);
    });
  }, 60_000);
});

describeAsRoot("the metrics file", () => {
  it("parses with promtool and follows a break and a recovery", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const startedAt = Date.now() / 1000;
      await deployed(lab, FAST);
      await waitFor("the metrics file", () => existsSync(metricsFile(lab)), 2000);
      /** The file as it is now, with promtool's verdict on that very text ("0": clean). */
      const snapshot = async () => {
        const text = readMetrics(lab);
        const r = await lab.exec("gw", ["promtool", "check", "metrics"], { input: text });
        return { text, promtool: `${r.code} ${r.stdout}${r.stderr}`.trim() };
      };
      const isp1 = (text: string) => ({
        up: metric(text, "multiwan_link_status", { link: "isp1", status: "up" }),
        degraded: metric(text, "multiwan_link_status", { link: "isp1", status: "degraded" }),
        down: metric(text, "multiwan_link_status", { link: "isp1", status: "down" }),
        carrying: metric(text, "multiwan_link_carrying", { link: "isp1" }),
        transitions: metric(text, "multiwan_link_transitions_total", { link: "isp1" }),
        rounds: metric(text, "multiwan_link_probe_rounds_total", { link: "isp1" }),
        // When the daemon wrote the file, less the seconds since the change: when the link changed.
        changedAt: metric(text, "multiwan_last_round_timestamp_seconds") - metric(text, "multiwan_link_seconds_since_change", { link: "isp1" }),
      });
      const variants = (text: string) => [...text.matchAll(/^multiwan_variant_info\{.*variant="([^"]*)"\} 1$/gm)].map((m) => m[1]);
      /** The metrics agree with state.json on when isp1 last changed (both carry the daemon's stamp). */
      const changedAsInState = (m: ReturnType<typeof isp1>) => expect(Math.abs(m.changedAt - healthState(lab)!.links[0].since / 1000)).toBeLessThan(0.0015);

      const initial = await snapshot();
      expect(initial.promtool).toBe("0");
      const before = isp1(initial.text);
      expect(before).toMatchObject({ up: 1, degraded: 0, down: 0, carrying: 1 });
      expect(variants(initial.text)).toEqual(["isp1+isp2"]);
      expect(metric(initial.text, "multiwan_link_status", { gateway: "labgw", link: "isp2", status: "up" })).toBe(1);

      await lab.breakUplink("isp1");
      await waitFor("isp1 down in the metrics", () => isp1(readMetrics(lab)).down === 1, 5000);
      const broken = await snapshot();
      expect(broken.promtool).toBe("0");
      const down = isp1(broken.text);
      expect(down).toMatchObject({ up: 0, degraded: 0, down: 1, carrying: 0, transitions: before.transitions + 1 });
      expect(down.rounds).toBeGreaterThan(before.rounds);
      changedAsInState(down);
      expect(down.changedAt).toBeGreaterThan(startedAt);
      expect(variants(broken.text)).toEqual(["isp2"]);
      expect(metric(broken.text, "multiwan_link_carrying", { link: "isp2" })).toBe(1);

      await lab.restoreUplink("isp1");
      await waitFor("isp1 up in the metrics", () => isp1(readMetrics(lab)).up === 1, 5000);
      const restored = await snapshot();
      expect(restored.promtool).toBe("0");
      const up = isp1(restored.text);
      expect(up).toMatchObject({ up: 1, degraded: 0, down: 0, carrying: 1, transitions: before.transitions + 2 });
      expect(up.rounds).toBeGreaterThan(down.rounds);
      changedAsInState(up);
      expect(up.changedAt).toBeGreaterThan(down.changedAt);
      expect(up.changedAt).toBeLessThan(Date.now() / 1000);
      expect(variants(restored.text)).toEqual(["isp1+isp2"]);
      console.log(`metrics: isp1 transitions ${before.transitions} → ${down.transitions} → ${up.transitions}, rounds ${before.rounds} → ${down.rounds} → ${up.rounds}, down for ${(up.changedAt - down.changedAt).toFixed(3)} s`);
    });
  }, 60_000);
});
