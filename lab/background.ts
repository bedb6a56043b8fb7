import { spawn, type ChildProcess } from "node:child_process";

export interface BackgroundOptions {
  /** SIGKILL after this long, whatever happens. */
  maxLifetimeMs: number;
  /** Receives stdout; without it, stdout is kept with stderr in `recentOutput`. */
  onStdout?: (chunk: string) => void;
  env?: NodeJS.ProcessEnv;
}

/** A long-running child with bounded life, a bounded output tail and a kill that waits for the end. */
export class BackgroundProcess {
  readonly pid: number;
  /** Resolves with the exit code (null when killed by a signal) once the process is gone. */
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  private alive = true;
  private output = "";

  constructor(argv: readonly string[], opts: BackgroundOptions) {
    this.child = spawn(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", "pipe"], env: opts.env });
    this.child.on("error", () => {}); // a failed spawn surfaces as exit code 127 below
    this.child.stdin!.on("error", () => {});
    const keep = (d: string) => (this.output = (this.output + d).slice(-8192));
    this.child.stdout!.setEncoding("utf8").on("data", opts.onStdout ?? keep);
    this.child.stderr!.setEncoding("utf8").on("data", keep);
    const hardLimit = setTimeout(() => this.child.kill("SIGKILL"), opts.maxLifetimeMs);
    this.exited = new Promise((resolve) =>
      this.child.on("close", (code) => {
        this.alive = false;
        clearTimeout(hardLimit);
        resolve(this.child.pid === undefined ? 127 : code);
      }),
    );
    this.pid = this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.alive;
  }

  /** The last 8 KiB of stderr (and of stdout when nobody else reads it). */
  get recentOutput(): string {
    return this.output;
  }

  write(text: string): void {
    if (this.alive) this.child.stdin!.write(text);
  }

  /** SIGTERM, then SIGKILL after a bounded grace period; resolves once the process is gone. */
  async kill(graceMs = 1000): Promise<void> {
    if (!this.alive) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
