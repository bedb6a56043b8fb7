// A failover run on a lab gateway: new connections at a steady rate while one uplink breaks upstream
// and comes back, with the health daemon's transitions as it reported them (state.json, polled).
import { readFileSync } from "node:fs";
import { LAYOUT, under, type DaemonState } from "../components/layout";
import type { ConnectionResult, Lab } from "./lab";
import { timeline, type Second } from "./timeline";
import { waitFor } from "./wait";

export interface FailoverPlan {
  link: string;
  /** Seconds from the start. */
  breakAt: number;
  restoreAt: number;
  seconds: number;
  ratePerSec: number;
}

export interface Transition {
  link: string;
  status: string;
  /** Seconds from the start, as the daemon stamped it. */
  at: number;
}

export interface FailoverRun {
  results: ConnectionResult[];
  bins: Second[];
  transitions: Transition[];
  failed: number;
  /** Seconds after the break that the last failed connection started (0: none failed). */
  lastFailAfterBreak: number;
}

/** The health daemon's state.json on a lab gateway; undefined before it is written (or mid-rename). */
export function healthState(lab: Lab): DaemonState | undefined {
  try {
    return JSON.parse(readFileSync(under(lab.root, LAYOUT.stateFile), "utf8"));
  } catch {
    return undefined;
  }
}

export async function runFailover(lab: Lab, p: FailoverPlan): Promise<FailoverRun> {
  const startAt = Date.now();
  const traffic = lab.openConnections(p.seconds * p.ratePerSec, {
    ratePerSec: p.ratePerSec,
    concurrency: 100,
    connectTimeoutMs: 1000,
    durationLimitMs: p.seconds * 1000 + 5000,
  });
  const links = () => healthState(lab)?.links ?? [];
  const seen = new Map(links().map((l) => [l.name, l.status]));
  const transitions: Transition[] = [];
  const poll = setInterval(() => {
    for (const l of links()) {
      if (seen.get(l.name) !== l.status) transitions.push({ link: l.name, status: l.status, at: (l.since - startAt) / 1000 });
      seen.set(l.name, l.status);
    }
  }, 50);
  const at = (s: number) => new Promise((r) => setTimeout(r, startAt + s * 1000 - Date.now()));
  try {
    await at(p.breakAt);
    await lab.breakUplink(p.link);
    await at(p.restoreAt);
    await lab.restoreUplink(p.link);
    const results = await traffic;
    const failedAt = results.filter((r) => !r.ok).map((r) => (r.startedAt - startAt) / 1000 - p.breakAt);
    return {
      results,
      bins: timeline(results, startAt, lab.links.map((l) => l.name), p.seconds),
      transitions,
      failed: failedAt.length,
      lastFailAfterBreak: failedAt.length ? Math.max(...failedAt) : 0,
    };
  } finally {
    clearInterval(poll);
  }
}

/** Milliseconds from `breakAt` to the start of the last connection that failed (0: none failed). */
export function recoveryMs(results: ConnectionResult[], breakAt: number): number {
  const failed = results.filter((r) => !r.ok && r.startedAt >= breakAt - 1000);
  return failed.length ? Math.max(...failed.map((r) => r.startedAt - breakAt)) : 0;
}

export interface OutageRun {
  /** From the break to the daemon's `down` stamp. */
  downAfterMs: number;
  /** recoveryMs of the clients with a 1 s connect timeout. */
  recoveryMs: number;
  failed: number;
  connections: number;
  /** Connections of the clients with a 5 s connect timeout (kernel SYN retries) that failed. */
  lost: number;
  patient: number;
}

/** Until `link` is up and the variant of every link is in place again (a 1:1 lab's steady state). */
export async function allCarrying(lab: Lab, link = "isp1"): Promise<void> {
  const all = lab.links.map((l) => l.name).join("+");
  await waitFor(`${link} up and carrying`, () => {
    const s = healthState(lab);
    return s?.variant === all && s.links.some((l) => l.name === link && l.status === "up");
  }, 15_000);
}

/**
 * `link` breaks upstream 2 s into 6 s of traffic from two clients: 20 new connections/s with a 1 s
 * connect timeout and 15/s with 5 s and the kernel's SYN retries (two rates: clients at one rate
 * lock in step with a 1:1 split, each on one link). Then it is restored, and the run ends once it
 * carries again.
 */
export async function outageRun(lab: Lab, link = "isp1"): Promise<OutageRun> {
  const seconds = 6;
  const short = lab.openConnections(seconds * 20, { ratePerSec: 20, concurrency: 100, connectTimeoutMs: 1000 });
  const patient = lab.openConnections(seconds * 15, { ratePerSec: 15, concurrency: 200, connectTimeoutMs: 5000 });
  await new Promise((r) => setTimeout(r, 2000));
  const breakAt = Date.now();
  await lab.breakUplink(link);
  const down = () => healthState(lab)?.links.find((l) => l.name === link);
  await waitFor(`${link} down`, () => down()?.status === "down", 6000);
  const downAfterMs = down()!.since - breakAt;
  const [quick, slow] = await Promise.all([short, patient]);
  await lab.restoreUplink(link);
  await allCarrying(lab, link);
  return {
    downAfterMs,
    recoveryMs: recoveryMs(quick, breakAt),
    failed: quick.filter((r) => !r.ok).length,
    connections: quick.length,
    lost: slow.filter((r) => !r.ok).length,
    patient: slow.length,
  };
}
