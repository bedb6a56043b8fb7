// The installed health daemon run the way apply.sh runs it where PID 1 is not systemd: in the
// background, in a session of its own, with MULTIWAN_ROOT set and its output appended to the log.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { LAYOUT, under } from "../../components/layout";
import type { BackgroundProcess, Lab } from "../../lab/lab";

export class HealthDaemon {
  private constructor(private readonly process: BackgroundProcess) {}

  static start(lab: Lab): HealthDaemon {
    const log = under(lab.root, LAYOUT.healthLog);
    mkdirSync(dirname(log), { recursive: true });
    const script = under(lab.root, `${LAYOUT.installDir}/health.sh`);
    // setsid execs in place (the child of node leads no group), so the pid is the daemon's and its group's.
    const argv = ["setsid", "sh", "-c", 'exec sh "$0" </dev/null >>"$1" 2>&1', script, log];
    return new HealthDaemon(lab.spawn(lab.ns.gw, argv, { env: { ...process.env, MULTIWAN_ROOT: lab.root } }));
  }

  get running(): boolean {
    return this.process.running;
  }

  /** Signals the daemon alone, or its whole process group as systemd stops a unit; resolves once it is gone. */
  async kill(signal: "SIGTERM" | "SIGKILL", o: { group?: boolean } = {}): Promise<void> {
    try {
      process.kill(o.group ? -this.process.pid : this.process.pid, signal);
    } catch {
      // already gone
    }
    const gone = await Promise.race([this.process.exited.then(() => true), new Promise((r) => setTimeout(r, 2000, false))]);
    if (!gone) await this.process.kill(0);
  }
}
