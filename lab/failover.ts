// A failover run on a lab gateway: new connections at a steady rate while one uplink breaks upstream
// and comes back, with the health daemon's transitions as it reported them (state.json, polled).
import { readFileSync } from "node:fs";
import { LAYOUT, under, type DaemonState } from "../components/layout";
import type { ConnectionResult, Lab } from "./lab";
import { timeline, type Second } from "./timeline";

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
