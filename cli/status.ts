// `multiwan status`: the live view of every gateway of one stack, all stacks, or a site file — link
// states from the health daemon and open connections per link from conntrack, one SSH session each.
import type { Command } from "commander";
import { gatewayStatus, type GatewayStatus } from "../components/status";
import type { DriftTarget } from "./drift";
import { mapLimit } from "./pool";
import { reportTargets, withTargetOptions, type TargetOptions } from "./targets";

export interface StatusRow extends GatewayStatus {
  stack?: string;
  gateway: string;
}

/** Read every target's status with at most `parallel` SSH sessions at once. */
export function statusAll(targets: DriftTarget[], parallel: number): Promise<StatusRow[]> {
  return mapLimit(targets, parallel, async (t) => ({
    ...(t.stack ? { stack: t.stack } : {}),
    gateway: t.gateway,
    ...(await gatewayStatus(t.target, t.probe)),
  }));
}

/** `42s`, `5m`, `3h12m`, `2d4h`. */
export function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${m % 60 ? `${m % 60}m` : ""}`;
  return `${Math.floor(h / 24)}d${h % 24 ? `${h % 24}h` : ""}`;
}

const stamp = (d: Date) => `${d.toISOString().slice(0, 19).replace("T", " ")}Z`;

/** A gateway's summary line, then one line per problem, each naming its cause. */
function gatewayNotes(r: StatusRow, now: Date): string[] {
  if (!r.reachable) return [`${r.gateway}: unreachable: ${r.error}`];
  const parts = [`health daemon ${r.daemon}`];
  if (r.variant) parts.push(`balancing over ${r.variant}`);
  if (r.passive) parts.push(`passive detection ${r.passive}`);
  // The state's age on the gateway's clock when it could be read: ours may be off.
  const written = r.stateAgeMs ?? (r.updated ? now.getTime() - r.updated.getTime() : null);
  parts.push(written === null ? "no state written" : `state written ${age(written)} ago`);
  if (r.links.some((l) => l.connections === null)) parts.push("conntrack not installed");
  else if (r.other) parts.push(`${r.other} other connections`);
  return [`${r.gateway}: ${parts.join(", ")}`, ...r.problems.map((p) => `${r.gateway}: ${p}`)];
}

/**
 * One line per link (an unreachable gateway: one line), then one note per gateway. CARRIES: whether
 * the variant in place gives the link new connections (a backup of a higher tier that is up waits
 * with `no`); `-` when the daemon has recorded no variant.
 *
 *     GATEWAY  LINK  TIER  STATE  CARRIES  SINCE                      CONNS  SHARE
 *     gw1      isp1  1     up     yes      2026-11-22 04:10:03Z (5m)  300    75.0 %
 *     gw1      lte   2     up     no       2026-11-22 04:10:03Z (5m)  0      0.0 %
 */
export function statusTable(rows: StatusRow[], now: Date = new Date()): string {
  const withStack = rows.some((r) => r.stack);
  const head = [...(withStack ? ["STACK"] : []), "GATEWAY", "LINK", "TIER", "STATE", "CARRIES", "SINCE", "CONNS", "SHARE"];
  const cells = rows.flatMap((r) => {
    const lead = [...(withStack ? [r.stack ?? ""] : []), r.gateway];
    if (!r.reachable) return [[...lead, "-", "", "unreachable", "", "", "", ""]];
    return r.links.map((l) => [
      ...lead,
      l.name,
      String(l.tier),
      stateCell(l),
      l.carrying === null ? "-" : l.carrying ? "yes" : "no",
      l.since ? `${stamp(l.since)} (${age(now.getTime() - l.since.getTime())})` : "",
      l.connections === null ? "-" : String(l.connections),
      l.connections === null || !r.total ? "-" : `${(l.share * 100).toFixed(1)} %`, // no connections: no share
    ]);
  });
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd();
  return [line(head), ...cells.map(line), "", ...rows.flatMap((r) => gatewayNotes(r, now).map((n) => `  ${n}`))].join("\n");
}

/** The link's state; a degraded one with the figures that degraded it. */
function stateCell(l: StatusRow["links"][number]): string {
  if (l.status !== "degraded" || !l.quality) return l.status;
  const rtt = l.quality.rttMs === null ? "no answer" : `${Math.round(l.quality.rttMs)} ms`;
  return `degraded (${rtt}, ${l.quality.lossPercent.toFixed(1)} % loss)`;
}

/**
 * 1 when a gateway could not be read, else 2 when a link is not up, a daemon not running or stale,
 * or a problem found, else 0. A backup that is up and carries nothing is as it should be.
 */
export function statusExitCode(rows: StatusRow[]): number {
  if (rows.some((r) => !r.reachable)) return 1;
  return rows.some((r) => r.daemon !== "running" || r.problems.length || r.links.some((l) => l.status !== "up")) ? 2 : 0;
}

export function addStatusCommand(cli: Command, setExitCode: (code: number) => void): void {
  withTargetOptions(
    cli
      .command("status")
      .description("each gateway's links now: tier, up or down and since when, whether it takes new connections, open connections and their share (exit 0 all up, 2 a link down, the daemon stopped or stale, or a sysctl the rules need unset, 1 unreachable, not deployed or error)"),
  ).action(async (opts: TargetOptions) => setExitCode(await reportTargets(opts, statusAll, statusTable, statusExitCode)));
}
