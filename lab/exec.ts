import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit code; 124 on timeout, 127 when the program could not be started. */
  code: number;
}

export interface ExecOptions {
  /** Hard limit; the process is SIGKILLed after it. Default 10 s. */
  timeoutMs?: number;
  /** Written to stdin (stdin is closed either way, so nothing waits on it). */
  input?: string;
  /** Throw (with stderr) instead of returning a non-zero code. */
  check?: boolean;
}

/** Runs argv without a shell. Never rejects unless `check` is set and the command failed. */
export function run(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const child = execFile(
      argv[0],
      argv.slice(1),
      { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 64 << 20, encoding: "utf8" },
      (err, stdout, stderr) => {
        let code = 0;
        if (err) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: number | string };
          if (e.killed) {
            code = 124;
            stderr += `\n(killed after ${timeoutMs} ms)`;
          } else code = typeof e.code === "number" ? e.code : 127;
        }
        const result = { stdout, stderr, code };
        if (opts.check && code !== 0) reject(new Error(`${argv.join(" ")} exited ${code}: ${stderr.trim()}`));
        else resolve(result);
      },
    );
    // Swallow EPIPE when the program exits without reading its input.
    child.stdin?.on("error", () => {});
    child.stdin?.end(opts.input ?? "");
  });
}

export function nsArgv(ns: string, argv: readonly string[]): string[] {
  return ["ip", "netns", "exec", ns, ...argv];
}

/** The process exists and is not a zombie (a killed orphan may wait a while for its reaper). */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}
