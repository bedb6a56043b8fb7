// What a gateway holds once a bundle is installed, defined once: apply.sh and health.sh print these
// paths (through the plan), the manifest records them, drift and status read them from the manifest.

/** Where apply.sh, health.sh and the push put things, relative to the gateway's root. */
export const LAYOUT = {
  installDir: "etc/multiwan",
  rtTables: "etc/iproute2/rt_tables.d/multiwan.conf",
  sysctl: "etc/sysctl.d/90-multiwan.conf",
  unitDir: "etc/systemd/system",
  hooksDir: "etc/multiwan-hooks.d",
  stageDir: "var/lib/multiwan",
  sysctlBefore: "var/lib/multiwan/sysctl.before",
  hostRules: "var/lib/multiwan/ip.host",
  hostRules6: "var/lib/multiwan/ip6.host",
  runDir: "run/multiwan",
  stateFile: "run/multiwan/state.json",
  variantFile: "run/multiwan/variant",
  linksDir: "run/multiwan/links",
  probesDir: "run/multiwan/probes",
  hookQueueDir: "run/multiwan/hook-queue",
  pidFile: "run/multiwan/health.pid",
  // On disk, not in /run: an apply still unconfirmed at a reboot is rolled back by the boot-time restore.
  pendingFile: "var/lib/multiwan/pending",
  watchdogPid: "run/multiwan/watchdog.pid",
  lockFile: "run/multiwan/lock",
  healthLog: "var/log/multiwan-health.log",
  applyLog: "var/log/multiwan-apply.log",
} as const;

export type Layout = { [K in keyof typeof LAYOUT]: string };

/** The systemd units of a bundle: bundle files of these names, installed into `unitDir`. */
export const UNITS = { restore: "multiwan-restore.service", health: "multiwan-health.service" } as const;

/** `root` + a LAYOUT path: `/` + `run/multiwan` is `/run/multiwan`. */
export const under = (root: string, path: string) => `${root.replace(/\/$/, "")}/${path}`;

/** The health daemon's `stateFile`, as health.sh writes it after every probe round. */
export interface DaemonState {
  gateway: string;
  /** Epoch milliseconds of this write. */
  updated: number;
  /** The balancing variant in place: live links joined by `+`, or `none`. */
  variant: string;
  /** Passive detection: reading conntrack's events, between two watchers, without a conntrack command, or off (health.passive false). */
  passive?: "watching" | "stopped" | "unavailable" | "off";
  /** Probe rounds started since the daemon started. */
  rounds?: number;
  links: {
    name: string;
    status: "up" | "degraded" | "down";
    /** Epoch milliseconds of the last change (or of the daemon's first sight of the link). */
    since: number;
    okRounds: number;
    failedRounds: number;
    /** Targets that answered in the last round. */
    lastAnswered: number;
    /** Targets probed per round. */
    targets: number;
    /** State changes so far. */
    transitions: number;
    /** The probes of the quality window (empty when quality is off): answered ones' mean round trip, loss in permille. */
    window: { sent: number; answered: number; rttUs: number; lossPermille: number };
  }[];
}
