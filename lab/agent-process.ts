import * as path from "node:path";
import { BackgroundProcess } from "./background";
import { nsArgv } from "./exec";

const AGENT = path.join(__dirname, "agent.cjs");

export type AgentMode = "serve" | "connect" | "longlived" | "udpflow";

export interface AgentEvent {
  type: string;
  [key: string]: unknown;
}

/**
 * One agent.cjs process inside a namespace; its events are the agent's JSON stdout lines.
 * `ip netns exec` execs node in place, so `pid` is the agent's own pid.
 */
export class AgentProcess {
  readonly process: BackgroundProcess;
  private readonly events: AgentEvent[] = [];
  private readonly waiters = new Set<() => void>();

  constructor(ns: string, mode: AgentMode, args: object, maxLifetimeMs: number) {
    const argv = nsArgv(ns, [process.execPath, AGENT, mode, JSON.stringify({ ...args, maxLifetimeMs })]);
    let buf = "";
    this.process = new BackgroundProcess(argv, {
      // The agent bounds its own life; this is the backstop.
      maxLifetimeMs: maxLifetimeMs + 5000,
      onStdout: (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          try {
            this.events.push(JSON.parse(line) as AgentEvent);
          } catch {
            this.events.push({ type: "error", message: `unparsable agent output: ${line.slice(0, 200)}` });
          }
        }
        this.notify();
      },
    });
    void this.process.exited.then(() => this.notify());
  }

  get pid(): number {
    return this.process.pid;
  }

  /** Events of a type received so far. */
  eventsOf(type: string): AgentEvent[] {
    return this.events.filter((e) => e.type === type);
  }

  /** The first event of `type`; rejects if the agent reports an error, exits first, or on timeout. */
  waitFor(type: string, timeoutMs: number): Promise<AgentEvent> {
    return new Promise((resolve, reject) => {
      const fail = (why: string) => {
        const output = this.process.recentOutput.trim();
        reject(new Error(`agent ${this.pid}: ${why}${output ? `\n${output}` : ""}`));
      };
      const settled = () => {
        const found = this.events.find((e) => e.type === type);
        const error = this.events.find((e) => e.type === "error");
        if (found) resolve(found);
        else if (error) fail(String(error.message));
        else if (!this.process.running) fail(`exited before "${type}"`);
        else return false;
        return true;
      };
      if (settled()) return;
      const waiter = () => {
        if (!settled()) return;
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        fail(`no "${type}" within ${timeoutMs} ms`);
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** Asks the agent to finish (it prints its result and exits); returns the result event. */
  async stop(timeoutMs = 5000): Promise<AgentEvent> {
    this.process.write("stop\n");
    try {
      return await this.waitFor("result", timeoutMs);
    } finally {
      await this.process.kill();
    }
  }

  kill(): Promise<void> {
    return this.process.kill();
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}
