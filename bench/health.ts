// The health daemon on the namespace lab: what a probe round costs (processes forked, CPU), and
// how fast each detection path fails over.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { LAYOUT, under } from "../components/layout";
import { deploy, labSite } from "../lab/deploy";
import { allCarrying, outageRun, type OutageRun } from "../lab/failover";
import { withLab, type Lab } from "../lab/lab";

const DEFAULT = { interval: 0.5, timeout: 1, down: 3, up: 5 };
const FAST = { interval: 0.1, timeout: 0.25, down: 3, up: 10 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TICK = 100; // clock ticks per second (USER_HZ)

/** Processes forked on the machine since boot (/proc/stat `processes`). */
function forks(): number {
  return Number(/^processes (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))![1]);
}

/**
 * CPU seconds of the daemon and everything it started: its session (apply.sh starts it with
 * setsid), each live process's own and reaped children's time.
 */
function daemonCpu(sid: number): number {
  let ticks = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue; // ended meanwhile
    }
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields from the 3rd (state) on
    if (Number(f[3]) !== sid) continue;
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return ticks / TICK;
}

/** The daemon's probe rounds so far, from its metrics file. */
function rounds(lab: Lab): number {
  const text = readFileSync(join(lab.root, "var/lib/prometheus/node-exporter/multiwan.prom"), "utf8");
  return Number(/^multiwan_link_probe_rounds_total\{[^}]*link="isp1"[^}]*\} (\d+)$/m.exec(text)![1]);
}

async function sample(lab: Lab, sid: number, ms: number) {
  const [f0, c0, r0, t0] = [forks(), daemonCpu(sid), rounds(lab), Date.now()];
  await sleep(ms);
  const [f1, c1, r1, t1] = [forks(), daemonCpu(sid), rounds(lab), Date.now()];
  const n = r1 - r0;
  return { rounds: n, perSecond: (n * 1000) / (t1 - t0), forksPerRound: (f1 - f0) / n, cpu: (c1 - c0) / ((t1 - t0) / 1000) };
}

/** The fast profile on 2 and 4 links, with passive detection: idle, and under 40 and 400 new connections/s. */
export async function daemonCost() {
  console.log("\nhealth daemon cost, fast profile (interval 0.1 s, timeout 0.25 s), passive on, one target per link; 10 s each:");
  console.log("| links | traffic | rounds/s | processes forked per round | CPU (share of one core) |\n|---|---|---|---|---|");
  for (const links of [2, 4]) {
    await withLab({ links }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: Array(links).fill(1), health: FAST }), { daemon: true });
      await allCarrying(lab);
      const sid = Number(readFileSync(under(lab.root, LAYOUT.pidFile), "utf8"));
      for (const traffic of [0, 40, 400]) {
        const load = traffic ? lab.openConnections(traffic * 12, { ratePerSec: traffic, concurrency: 100 }) : Promise.resolve([]);
        if (traffic) await sleep(1000);
        const s = await sample(lab, sid, 10_000);
        await load;
        console.log(`| ${links} | ${traffic ? `${traffic} new TCP connections/s` : "none"} | ${s.perSecond.toFixed(1)} | ${s.forksPerRound.toFixed(1)} | ${(s.cpu * 100).toFixed(0)} % |`);
      }
    });
  }
}

const range = (xs: number[], unit: (x: number) => string) => `${unit(Math.min(...xs))}–${unit(Math.max(...xs))}`;
const seconds = (ms: number) => (ms / 1000).toFixed(2);

/** Failover per detection path: 5 upstream breaks each, under 20 + 15 new connections/s. */
export async function detection() {
  const RUNS = 5;
  const profiles = [
    ["default probes (0.5 s / 1 s / down 3), passive off", { ...DEFAULT, passive: false }],
    ["default probes + passive (the default)", DEFAULT],
    ["fast probes (0.1 s / 0.25 s / down 3), passive off", { ...FAST, passive: false }],
    ["fast probes + passive", FAST],
  ] as const;
  console.log(`\nfailover by detection path: uplink 1 of 2 (1:1) broken upstream, ${RUNS} runs each; clients at 20/s with a 1 s connect timeout and at 15/s with 5 s (kernel SYN retries):`);
  console.log("| detection | link down after the break | last failed 1 s connection after the break | failed 1 s connections | lost 5 s connections |\n|---|---|---|---|---|");
  for (const [label, health] of profiles) {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1], health }), { daemon: true });
      await allCarrying(lab);
      const runs: OutageRun[] = [];
      for (let i = 0; i < RUNS; i++) runs.push(await outageRun(lab));
      const sum = (f: (r: OutageRun) => number) => runs.reduce((a, r) => a + f(r), 0);
      console.log(`| ${label} | ${range(runs.map((r) => r.downAfterMs), seconds)} s | ${range(runs.map((r) => r.recoveryMs), seconds)} s | ${sum((r) => r.failed)} of ${sum((r) => r.connections)} | ${sum((r) => r.lost)} of ${sum((r) => r.patient)} |`);
    });
  }
}
