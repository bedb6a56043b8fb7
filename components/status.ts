// Status: what a gateway is doing right now, read over one SSH session. The health daemon's
// state.json says which links are up and since when (and, by its age on the gateway's clock,
// whether the daemon still runs its rounds); conntrack says how many connections each link carries
// (by our mark byte); the sysctls the rules need are read back. Read-only; links, marks, sysctls
// and paths come from the bundle's manifest.
import type { DaemonState } from "./layout";
import { readManifest, type Manifest } from "./manifest";
import { daemonSection, parseProbe, parseSysctls, section, sysctlSection, type GatewayProbe } from "./probe-protocol";
import { ConnectError, runRemote, type SshTarget } from "./remote";
import type { Bundle } from "./render";

export interface LinkStatus {
  name: string;
  /** `unknown`: the daemon has not written a state for this link (never ran, or another bundle), or its state is stale. */
  /** `degraded`: answering, but slower or lossier than `health.quality` allows: out of the balancing. */
  status: "up" | "degraded" | "down" | "unknown";
  /** When the link last changed state (or the daemon first saw it). */
  since: Date | null;
  /** Open connections carrying the link's mark; null when conntrack is not available. */
  connections: number | null;
  /** connections / total, 0..1 (0 when nothing is open). */
  share: number;
  tier: number;
  /** Whether the variant in place gives it new connections; null when that is not known. */
  carrying: boolean | null;
  /** The daemon's quality window, when it keeps one: mean round trip (ms) and loss (%) of its probes. */
  quality?: { rttMs: number | null; lossPercent: number; probes: number };
  /** State changes the daemon counted (kept across its restarts); null when it has not said. */
  transitions: number | null;
}

export interface GatewayStatus {
  reachable: boolean;
  /** The SSH or remote error when not reachable. */
  error?: string;
  /** `stale`: its process exists but its state is older than staleAfterMs (frozen or stuck). */
  daemon: "running" | "stale" | "stopped" | "unknown";
  /** The balancing variant the daemon last put in place (`isp1+isp2`, `none`). */
  variant?: string;
  /** Passive detection as the daemon last reported it (absent: a daemon from before it). */
  passive?: NonNullable<DaemonState["passive"]>;
  /** Probe rounds since the daemon started (absent: it has not said). */
  rounds?: number;
  /** When the daemon last wrote its state. */
  updated: Date | null;
  /** How long ago, on the gateway's own clock; null when there is no state or no clock reading. */
  stateAgeMs: number | null;
  /** What is wrong beyond the links' states, each naming its cause (a sysctl, a stale daemon). */
  problems: string[];
  links: LinkStatus[];
  /** Open connections over all links. */
  total: number;
  /** Open connections carrying none of the links' marks (LAN-local, management, unbalanced). */
  other: number;
}

const PASSIVE_STATES: readonly string[] = ["watching", "stopped", "unavailable", "off"] satisfies NonNullable<DaemonState["passive"]>[];

/** What a sysctl the rules need does when it has another value. */
const SYSCTL_EFFECTS: Record<string, string> = {
  "net.ipv4.ip_forward": "the LAN is offline (the gateway forwards nothing)",
  "net.ipv4.conf.all.src_valid_mark": "rp_filter checks replies without their mark and may drop every reply on a non-default link",
  "net.ipv6.conf.all.forwarding": "the LAN's IPv6 is offline (the gateway forwards no IPv6)",
};

/**
 * The daemon rewrites its state every round (interval + a little); a state older than a few rounds
 * means it is frozen or stuck. The floor allows for a slow round on a small router and for a
 * variant swap waiting on an apply's lock.
 */
export const STALE_ROUNDS = 5;
export const STALE_FLOOR_MS = 2000;
export const staleAfterMs = (intervalSeconds: number) => Math.max(STALE_ROUNDS * intervalSeconds * 1000, STALE_FLOOR_MS);

/** Name, mark byte and tier of each link, in config order, from the bundle's manifest. */
export function statusLinks(files: Bundle): { name: string; markByte: number; tier: number }[] {
  return readManifest(files).links.map(({ name, markByte, tier }) => ({ name, markByte, tier: tier ?? 1 }));
}

/** A conntrack mark → the value of our mark byte in it (the bits of the manifest's mask, shifted down). */
function markByteOf(manifest: Manifest): (mark: number) => number {
  const mask = Number(manifest.markMask);
  const lowest = (mask & -mask) >>> 0;
  return (mark) => ((mark & mask) >>> 0) / lowest;
}

/**
 * Daemon liveness (as the drift probe checks it), the daemon's state.json and the gateway's clock
 * (epoch ms, to age the state without trusting our clock), the sysctls, and open conntrack entries
 * counted per mark in one pass of `conntrack -L` (both families): lines `MARK COUNT`. Closed TCP entries
 * (TIME_WAIT, CLOSE) and ICMP (the daemon's own probes, kept 30 s each) are not counted.
 */
export function statusCommand(p: GatewayProbe): string {
  const m = readManifest(p.files);
  const count =
    `awk '$1 == "icmp" || $1 == "icmpv6" || ($1 == "tcp" && ($4 == "TIME_WAIT" || $4 == "CLOSE")) { next } ` +
    `{ for (i = 4; i <= NF; i++) if ($i ~ /^mark=[0-9]+$/) { c[substr($i, 6)]++; break } } ` +
    `END { for (m in c) print m, c[m] }'`;
  return [
    daemonSection(m),
    section("state", `cat ${m.paths.stateFile} 2>/dev/null`),
    section("clock", "date +%s%3N"),
    sysctlSection(m),
    section("conntrack", `if command -v conntrack >/dev/null; then conntrack -L 2>/dev/null | ${count}; else echo unavailable; fi`),
    "true",
  ].join("\n");
}

const date = (ms: unknown) => (typeof ms === "number" && Number.isFinite(ms) && ms > 0 ? new Date(ms) : null);

/** The command's output → status of the bundle's links (names and marks from its manifest). */
export function parseStatus(stdout: string, files: Bundle): GatewayStatus {
  const live = parseProbe(stdout);
  const manifest = readManifest(files);
  const byteOf = markByteOf(manifest);
  // Fields may be missing or of any type: the file is read as the gateway has it.
  let state: Partial<DaemonState> = {};
  try {
    state = JSON.parse((live.get("state") ?? []).join("")) ?? {};
  } catch {
    // no state yet (daemon never ran) or a torn read: links stay unknown
  }
  const daemonLine = live.get("daemon")?.[0];
  const ct = live.get("conntrack");
  const counts = new Map<number, number>();
  for (const line of ct ?? []) {
    const m = /^(\d+) (\d+)$/.exec(line);
    if (!m) continue;
    const byte = byteOf(Number(m[1]));
    counts.set(byte, (counts.get(byte) ?? 0) + Number(m[2]));
  }
  const conntrack = ct !== undefined && ct[0] !== "unavailable";

  const planned = statusLinks(files);
  const variant = typeof state.variant === "string" && manifest.variants.includes(state.variant) ? state.variant : undefined;
  const carried = variant === undefined ? undefined : (manifest.carrying[variant] ?? (variant === "none" ? [] : variant.split("+")));
  const links = planned.map(({ name, markByte, tier }): LinkStatus => {
    const s = state.links?.find((l) => l.name === name);
    return {
      name,
      status: s?.status === "up" || s?.status === "degraded" || s?.status === "down" ? s.status : "unknown",
      since: date(s?.since),
      connections: conntrack ? (counts.get(markByte) ?? 0) : null,
      share: 0,
      tier,
      carrying: carried ? carried.includes(name) : null,
      ...qualityOf(s?.window),
      transitions: count(s?.transitions) ?? null,
    };
  });
  const total = links.reduce((sum, l) => sum + (l.connections ?? 0), 0);
  for (const l of links) l.share = total ? (l.connections ?? 0) / total : 0;
  const ours = new Set(planned.map((l) => l.markByte));
  const other = [...counts].reduce((sum, [byte, n]) => sum + (ours.has(byte) ? 0 : n), 0);

  const problems: string[] = [];
  const sysctls = parseSysctls(live);
  for (const { key, value } of manifest.sysctls) {
    const have = sysctls.get(key);
    if (have !== value) {
      problems.push(`${key} ${have === undefined ? "could not be read" : `is ${have}`} (the rules need ${value}): ${SYSCTL_EFFECTS[key] ?? "the rules may not work"}`);
    }
  }

  const updated = date(state.updated);
  const clock = Number(live.get("clock")?.[0]);
  const stateAgeMs = updated && Number.isSafeInteger(clock) && clock > 0 ? Math.max(0, clock - updated.getTime()) : null;
  let daemon: GatewayStatus["daemon"] = daemonLine === "active" ? "running" : daemonLine ? "stopped" : "unknown";
  if (daemon === "running") {
    const stale = !updated
      ? "it runs but has written no state"
      : stateAgeMs !== null && stateAgeMs > staleAfterMs(manifest.health.interval)
        ? `state written ${Math.round(stateAgeMs / 1000)}s ago`
        : undefined;
    if (stale) {
      daemon = "stale";
      problems.push(`health daemon stale: ${stale} (interval ${manifest.health.interval} s)`);
      for (const l of links) l.status = "unknown"; // as of when, no one can say
    } else if (stateAgeMs === null) {
      problems.push("cannot tell whether the health daemon is alive: the gateway's clock could not be read");
    }
    if (!stale && state.passive === "stopped") {
      problems.push("passive detection stopped (its conntrack event watcher ended; the daemon starts it again within 30 s): failover waits for the probes");
    } else if (!stale && state.passive === "unavailable") {
      problems.push("passive detection unavailable: the gateway has no conntrack command: failover waits for the probes");
    }
  } else {
    // A daemon that does not run watches nothing: its last states are history, not the links now.
    for (const l of links) l.status = "unknown";
  }

  return {
    reachable: true,
    daemon,
    ...(typeof state.variant === "string" ? { variant: state.variant } : {}),
    ...(PASSIVE_STATES.includes(state.passive as never) ? { passive: state.passive } : {}),
    ...(count(state.rounds) === undefined ? {} : { rounds: state.rounds }),
    updated,
    stateAgeMs,
    links,
    total,
    other,
    problems,
  };
}

/** A count from the gateway's state: a non-negative integer, else undefined (fields of any type: as the gateway has them). */
const count = (v: unknown) => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : undefined);

/** The state's quality window as figures, when it holds probes. */
function qualityOf(w: Partial<DaemonState["links"][number]["window"]> | undefined): Pick<LinkStatus, "quality"> {
  const [sent, answered, rtt, loss] = [count(w?.sent), count(w?.answered), count(w?.rttUs), count(w?.lossPermille)];
  if (!sent || answered === undefined || rtt === undefined || loss === undefined) return {};
  return { quality: { rttMs: answered ? rtt / 1000 : null, lossPercent: loss / 10, probes: sent } };
}

function unreachable(links: { name: string; tier: number }[], error: string): GatewayStatus {
  const unknown = links.map(({ name, tier }) => ({ name, status: "unknown" as const, since: null, connections: null, share: 0, tier, carrying: null, transitions: null }));
  return { reachable: false, error, daemon: "unknown", updated: null, stateAgeMs: null, links: unknown, total: 0, other: 0, problems: [] };
}

/**
 * One SSH session: never throws; a gateway that cannot be read is `reachable: false` with the
 * reason. So is one whose pushed bundle has no usable manifest (an older multiwan pushed it):
 * without it nothing can be read, and a status that looked fine would hide that.
 */
export async function gatewayStatus(target: SshTarget, inputs: GatewayProbe): Promise<GatewayStatus> {
  let links: ReturnType<typeof statusLinks>;
  try {
    links = statusLinks(inputs.files);
  } catch (e) {
    return unreachable([], `${target.host}: ${(e as Error).message}`);
  }
  try {
    const r = await runRemote(target, statusCommand(inputs));
    if (r.code !== 0) return unreachable(links, `status command failed (${r.code}): ${r.stderr.trim()}`);
    return parseStatus(r.stdout, inputs.files);
  } catch (e) {
    return unreachable(links, e instanceof ConnectError ? e.message : `${target.host}: ${(e as Error).message}`);
  }
}
