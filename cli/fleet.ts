// `multiwan fleet preview|up|drift|status`: one operation over many site stacks, a bounded number at a
// time. Each stack runs in a worker process of its own (`multiwan fleet-worker`), which drives the
// Automation API for that one stack: Pulumi's in-process language server reports an unhandled
// error to every program running in the process, so stacks sharing one would fail each other.
// A failure is recorded in its row and the others go on.
import type { EngineEvent, OpMap } from "@pulumi/pulumi/automation";
import { spawn } from "node:child_process";
import { writeSync } from "node:fs";
import { join } from "node:path";
import { bundleLineChanges } from "../components/render";
import { probeAll, stackTargets } from "./drift";
import { statusAll, statusExitCode, statusTable } from "./status";
import { mapLimit } from "./pool";
import type { Progress } from "./progress";
import { engineMessage, selectStack } from "./workspace";

export type FleetOp = "preview" | "up" | "drift" | "status";
const GATEWAY_TYPE = "multiwan:index:Gateway";

export interface FleetRow {
  stack: string;
  /** Gateways in the stack (null: unknown, the program did not get that far). */
  gateways: number | null;
  changes: string;
  seconds: number;
  /** drifted (drift) and degraded (status: a link down, a daemon stopped) are not failures. */
  result: "ok" | "drifted" | "degraded" | "failed";
  /** Why it failed, as the engine or the gateway said it. */
  error?: string;
  /** Printed after the summary: the engine's diff (preview/up --diff), the links (status). */
  detail?: string;
}

export interface StackOptions {
  cwd: string;
  diff?: boolean;
}

export interface FleetOptions extends StackOptions {
  parallel: number;
  progress: Progress;
}

type Outcome = Omit<FleetRow, "stack" | "seconds">;
type Report = (text: string) => void;

const opSummary = (ops: OpMap | undefined) =>
  Object.entries(ops ?? {})
    .filter(([op, n]) => op !== "same" && n)
    .map(([op, n]) => `${n} ${op}`)
    .join(", ") || "no changes";

/**
 * The engine's words for a failure: its error diagnostics, most specific (per resource) first,
 * else the `error:` lines of the CLI's output.
 */
function failure(diagnostics: { urn?: string; message: string }[], thrown: unknown): string {
  const ordered = [...diagnostics.filter((d) => d.urn), ...diagnostics.filter((d) => !d.urn)].map((d) => d.message.trim());
  const text = ordered.find(Boolean) ?? engineMessage(thrown);
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, "").split("\n").filter((l) => l.trim()).slice(0, 12).join("\n");
}

const PUSH_TYPE = "pulumi-nodejs:dynamic:Resource";

async function engineOp(op: "preview" | "up", name: string, o: StackOptions, report: Report): Promise<Outcome> {
  const gateways = new Set<string>();
  // Per updated gateway, the size of its rule change: what a reviewer of the diff will read.
  const lines = new Map<string, string>();
  const diagnostics: { urn?: string; message: string }[] = [];
  const onEvent = (e: EngineEvent) => {
    const m = e.resourcePreEvent?.metadata;
    if (m) {
      if (m.type === GATEWAY_TYPE) gateways.add(m.urn);
      if (m.op !== "same") report(`${m.op} ${m.urn.split("::").pop()}`);
      const [before, after] = [m.old?.inputs, m.new?.inputs];
      if (m.type === PUSH_TYPE && m.op === "update" && before?.files && after?.files) {
        const { added, removed } = bundleLineChanges(before.files, after.files);
        lines.set(after.gateway, `${after.gateway} +${added} -${removed} lines`);
      }
    }
    const d = e.diagnosticEvent;
    if (d?.severity === "error") diagnostics.push({ urn: d.urn, message: d.message });
  };
  try {
    const stack = await selectStack(o.cwd, name);
    report(op === "up" ? "updating" : "previewing");
    const opts = { onEvent, diff: o.diff, color: "never" as const };
    const r = op === "up" ? await stack.up(opts) : await stack.preview(opts);
    const changes = [opSummary("summary" in r ? r.summary.resourceChanges : r.changeSummary), ...[...lines.values()].sort()].join(", ");
    return { gateways: gateways.size, changes, result: "ok", ...(o.diff ? { detail: r.stdout } : {}) };
  } catch (e) {
    return { gateways: gateways.size || null, changes: "", result: "failed", error: failure(diagnostics, e) };
  }
}

/** Probe the stack's gateways against the bundles in its state (what `multiwan drift` does). */
async function driftOp(name: string, o: StackOptions, report: Report): Promise<Outcome> {
  try {
    const targets = await stackTargets(name, o.cwd);
    report(`probing ${targets.length} gateways`);
    const rows = await probeAll(targets, 20);
    const bad = rows.filter((r) => r.status !== "in-sync");
    const lines = bad.map((r) => `${r.gateway} ${r.status}: ${r.drift.join("; ")}`).join("\n");
    const unreachable = rows.some((r) => r.status === "unreachable");
    return {
      gateways: rows.length,
      changes: bad.length ? bad.map((r) => `${r.gateway} ${r.status}`).join(", ") : "in sync",
      result: unreachable ? "failed" : bad.length ? "drifted" : "ok",
      ...(bad.length ? { error: lines } : {}),
    };
  } catch (e) {
    return { gateways: null, changes: "", result: "failed", error: failure([], e) };
  }
}

/** Each gateway's links now (what `multiwan status` shows). */
async function statusOp(name: string, o: StackOptions, report: Report): Promise<Outcome> {
  try {
    const targets = await stackTargets(name, o.cwd);
    report(`reading ${targets.length} gateways`);
    const rows = await statusAll(targets, 20);
    const links = rows.flatMap((r) => r.links);
    const code = statusExitCode(rows);
    return {
      gateways: rows.length,
      changes: `${links.filter((l) => l.status === "up").length}/${links.length} links up`,
      result: code === 1 ? "failed" : code === 2 ? "degraded" : "ok",
      detail: statusTable(rows),
    };
  } catch (e) {
    return { gateways: null, changes: "", result: "failed", error: failure([], e) };
  }
}

const OPS = {
  preview: (name: string, o: StackOptions, report: Report) => engineOp("preview", name, o, report),
  up: (name: string, o: StackOptions, report: Report) => engineOp("up", name, o, report),
  drift: driftOp,
  status: statusOp,
};

/** The worker's side: run `op` on one stack, reporting progress and the outcome as JSON lines on fd 3. */
export async function fleetWorker(op: FleetOp, name: string, o: StackOptions): Promise<void> {
  const send = (msg: object) => writeSync(3, `${JSON.stringify(msg)}\n`);
  const report: Report = (text) => send({ progress: text });
  send({ outcome: await OPS[op](name, o, report) });
}

const BIN = join(__dirname, "../bin/multiwan.js");

/** The parent's side: one worker process for `name`; its crash is that stack's failure, nobody else's. */
function runWorker(op: FleetOp, name: string, o: FleetOptions): Promise<Outcome> {
  const args = [BIN, "fleet-worker", op, name, "--cwd", o.cwd, ...(o.diff ? ["--diff"] : [])];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe", "pipe"] });
  let stderr = "";
  let outcome: Outcome | undefined;
  let buf = "";
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-4000)));
  (child.stdio[3] as NodeJS.ReadableStream).setEncoding("utf8").on("data", (d: string) => {
    buf += d;
    for (let i; (i = buf.indexOf("\n")) >= 0; buf = buf.slice(i + 1)) {
      let msg: { progress?: string; outcome?: Outcome };
      try {
        msg = JSON.parse(buf.slice(0, i));
      } catch {
        continue; // not the worker's: without an outcome the stack counts as failed anyway
      }
      if (msg.progress) o.progress(name, msg.progress);
      if (msg.outcome) outcome = msg.outcome;
    }
  });
  return new Promise((resolve) =>
    child.on("close", (code, signal) =>
      resolve(outcome ?? { gateways: null, changes: "", result: "failed", error: `worker exited ${signal ?? code}: ${stderr.trim() || "no output"}` }),
    ),
  );
}

export async function runFleet(op: FleetOp, stacks: string[], o: FleetOptions): Promise<FleetRow[]> {
  return mapLimit(stacks, o.parallel, async (name) => {
    const t0 = Date.now();
    o.progress(name, "starting");
    const row = { stack: name, ...(await runWorker(op, name, o)), seconds: (Date.now() - t0) / 1000 };
    o.progress(name, `${row.result} in ${row.seconds.toFixed(1)} s${row.result === "ok" ? ` (${row.changes})` : ""}`);
    return row;
  });
}

export function fleetTable(rows: FleetRow[]): string {
  const head = ["STACK", "GATEWAYS", "CHANGES", "DURATION", "RESULT"];
  const cells = rows.map((r) => [r.stack, r.gateways === null ? "-" : String(r.gateways), r.changes || "-", `${r.seconds.toFixed(1)} s`, r.result]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd();
  const failed = rows.filter((r) => r.error);
  const details = failed.flatMap((r) => ["", `${r.stack} ${r.result}:`, ...r.error!.split("\n").map((l) => `  ${l}`)]);
  const count = (result: FleetRow["result"]) => `${rows.filter((r) => r.result === result).length} ${result}`;
  const total = `${rows.length} stacks: ${["ok", "drifted", "degraded", "failed"].map((r) => count(r as FleetRow["result"])).join(", ")}`;
  return [line(head), ...cells.map(line), ...details, "", total].join("\n");
}

/** 1 when any stack failed, else 2 when any drifted or is degraded, else 0 (as `drift` and `status`). */
export function fleetExitCode(rows: FleetRow[]): number {
  if (rows.some((r) => r.result === "failed")) return 1;
  return rows.some((r) => r.result === "drifted" || r.result === "degraded") ? 2 : 0;
}
