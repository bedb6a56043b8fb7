// `multiwan fleet preview|up|refresh|drift|status`: one operation over many site stacks, a bounded
// number at a time. Each stack runs the project's own program, in a worker process of its own
// (`multiwan fleet-worker`) that drives the Automation API for that one stack, so whatever goes
// wrong in one (an error the Automation API leaves unhandled, a crash) is that stack's failure
// only: it is recorded in its row and the others go on.
import type { EngineEvent, OpMap } from "@pulumi/pulumi/automation";
import { spawn } from "node:child_process";
import { writeSync } from "node:fs";
import { join } from "node:path";
import { GATEWAY_TYPE } from "../components/gateway";
import { PACKAGE_ROOT } from "../components/package-root";
import { bundleLineChanges } from "../components/render";
import { probeAll, pushedGateways, stackTargets, type DriftRow, type DriftTarget } from "./drift";
import { statusAll, statusExitCode, statusTable } from "./status";
import { mapLimit } from "./pool";
import type { Progress } from "./progress";
import { engineMessage, selectedStack, selectStack, workspace } from "./workspace";

export type FleetOp = "preview" | "up" | "refresh" | "drift" | "status";
/** The operations that run the engine on a stack (and so select it, as the Automation API does). */
const ENGINE_OPS: readonly FleetOp[] = ["preview", "up", "refresh"];

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
  /** preview/up: false skips refreshing the state from the gateways first. */
  refresh?: boolean;
}

export interface FleetOptions extends StackOptions {
  parallel: number;
  progress: Progress;
}

type Outcome = Omit<FleetRow, "stack" | "seconds">;
type Report = (text: string) => void;

const NOT_DEPLOYED: Outcome = { gateways: 0, changes: "not deployed", result: "failed" };
const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;

const opSummary = (ops: OpMap | undefined) =>
  Object.entries(ops ?? {})
    .filter(([op, n]) => op !== "same" && n)
    .map(([op, n]) => `${n} ${op}`)
    .join(", ") || "no changes";

/** What an update does to one gateway: how big its rule change is, and the drift it repairs. */
export function gatewayChange(gateway: string, lines: { added: number; removed: number }, drift: string[]): string {
  const parts = [
    ...(lines.added || lines.removed || !drift.length ? [`+${lines.added} -${lines.removed} lines`] : []),
    ...(drift.length ? [`repair: ${count(drift.length, "drifted line")}`] : []),
  ];
  return `${gateway} ${parts.join(", ")}`;
}

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

/**
 * An engine operation's events: each step as progress, the Gateway components, each gateway's
 * update (of its push: the child of a Gateway that carries the bundle) and error diagnostics.
 */
export function watchEngine(report: Report) {
  const gateways = new Set<string>();
  // Per updated gateway, what a reviewer of the diff will read first.
  const updates = new Map<string, string>();
  // Gateways the refresh could not check: never a repair to report as ok.
  const unreachable: string[] = [];
  const diagnostics: { urn?: string; message: string }[] = [];
  const onEvent = (e: EngineEvent) => {
    const m = e.resourcePreEvent?.metadata;
    if (m) {
      if (m.type === GATEWAY_TYPE) gateways.add(m.urn);
      if (m.op !== "same") report(`${m.op} ${m.urn.split("::").pop()}`);
      const [before, after] = [m.old?.inputs, m.new?.inputs];
      if (m.op === "update" && gateways.has(m.new?.parent ?? "") && before?.files && after?.files) {
        // After a refresh, the old state's outputs carry the drift it found.
        const drift: string[] = m.old?.outputs?.drift ?? [];
        const unchecked = drift.filter((d) => d.startsWith("unreachable:"));
        unreachable.push(...unchecked.map((d) => `${after.gateway} ${d}`));
        const repaired = drift.filter((d) => !unchecked.includes(d));
        updates.set(after.gateway, gatewayChange(after.gateway, bundleLineChanges(before.files, after.files), repaired));
      }
    }
    const d = e.diagnosticEvent;
    if (d?.severity === "error") diagnostics.push({ urn: d.urn, message: d.message });
  };
  const failed = (thrown: unknown): Outcome => ({ gateways: gateways.size || null, changes: "", result: "failed", error: failure(diagnostics, thrown) });
  return { onEvent, gateways, updates, unreachable, failed };
}

async function engineOp(op: "preview" | "up", name: string, o: StackOptions, report: Report): Promise<Outcome> {
  const watch = watchEngine(report);
  try {
    const stack = await selectStack(o.cwd, name);
    report(op === "up" ? "updating" : "previewing");
    // Refreshed first, drift on a gateway is an update of its push, shown and made as a repair.
    const opts = { onEvent: watch.onEvent, diff: o.diff, refresh: o.refresh !== false, color: "never" as const };
    const r = op === "up" ? await stack.up(opts) : await stack.preview(opts);
    const changes = [opSummary("summary" in r ? r.summary.resourceChanges : r.changeSummary), ...[...watch.updates.values()].sort()].join(", ");
    const unchecked = watch.unreachable.length ? { result: "failed" as const, error: watch.unreachable.join("\n") } : { result: "ok" as const };
    return { gateways: watch.gateways.size, changes, ...unchecked, ...(o.diff ? { detail: r.stdout } : {}) };
  } catch (e) {
    return watch.failed(e);
  }
}

/** What a refresh found, from each gateway's push in the refreshed state. */
export function refreshOutcome(pushes: { gateway: string; drift?: string[] }[]): Outcome {
  if (!pushes.length) return NOT_DEPLOYED;
  const drifted = pushes.filter((p) => p.drift?.length);
  const unreachable = drifted.some((p) => p.drift!.some((d) => d.startsWith("unreachable:")));
  return {
    gateways: pushes.length,
    changes: drifted.length ? drifted.map((p) => `${p.gateway} drifted: ${count(p.drift!.length, "line")}`).join(", ") : "in sync",
    result: unreachable ? "failed" : drifted.length ? "drifted" : "ok",
    ...(drifted.length ? { error: drifted.flatMap((p) => p.drift!.map((d) => `${p.gateway} ${d}`)).join("\n") } : {}),
  };
}

/** Refresh the stack's state from its gateways (the push's read probes each): the drift is recorded there. */
async function refreshOp(name: string, o: StackOptions, report: Report): Promise<Outcome> {
  const watch = watchEngine(report);
  try {
    const stack = await selectStack(o.cwd, name);
    report("refreshing");
    await stack.refresh({ onEvent: watch.onEvent, color: "never" });
    return refreshOutcome(pushedGateways(await stack.exportStack()));
  } catch (e) {
    return watch.failed(e);
  }
}

/** `probe` over the stack's gateways as last pushed; a stack with none is not deployed. */
async function onGateways(name: string, o: StackOptions, report: Report, verb: string, probe: (targets: DriftTarget[]) => Promise<Outcome>): Promise<Outcome> {
  try {
    const targets = await stackTargets(name, o.cwd);
    if (!targets.length) return NOT_DEPLOYED;
    report(`${verb} ${count(targets.length, "gateway")}`);
    return await probe(targets);
  } catch (e) {
    return { gateways: null, changes: "", result: "failed", error: failure([], e) };
  }
}

/** The drift rows of one stack (what `multiwan drift` shows) as its outcome. */
export function driftOutcome(rows: DriftRow[]): Outcome {
  const bad = rows.filter((r) => r.status !== "in-sync");
  return {
    gateways: rows.length,
    changes: bad.length ? bad.map((r) => `${r.gateway} ${r.status}`).join(", ") : "in sync",
    result: rows.some((r) => r.status === "unreachable") ? "failed" : bad.length ? "drifted" : "ok",
    ...(bad.length ? { error: bad.map((r) => `${r.gateway} ${r.status}: ${r.drift.join("; ")}`).join("\n") } : {}),
  };
}

/** Probe the stack's gateways against the bundles in its state (what `multiwan drift` does). */
const driftOp = (name: string, o: StackOptions, report: Report) =>
  onGateways(name, o, report, "probing", async (targets) => driftOutcome(await probeAll(targets, 20)));

/** Each gateway's links now (what `multiwan status` shows). */
const statusOp = (name: string, o: StackOptions, report: Report) =>
  onGateways(name, o, report, "reading", async (targets) => {
    const rows = await statusAll(targets, 20);
    const links = rows.flatMap((r) => r.links);
    const code = statusExitCode(rows);
    return {
      gateways: rows.length,
      changes: `${links.filter((l) => l.status === "up").length}/${links.length} links up`,
      result: code === 1 ? "failed" : code === 2 ? "degraded" : "ok",
      detail: statusTable(rows),
    };
  });

const OPS = {
  preview: (name: string, o: StackOptions, report: Report) => engineOp("preview", name, o, report),
  up: (name: string, o: StackOptions, report: Report) => engineOp("up", name, o, report),
  refresh: refreshOp,
  drift: driftOp,
  status: statusOp,
};

/** The worker's side: run `op` on one stack, reporting progress and the outcome as JSON lines on fd 3. */
export async function fleetWorker(op: FleetOp, name: string, o: StackOptions): Promise<void> {
  const send = (msg: object) => writeSync(3, `${JSON.stringify(msg)}\n`);
  const report: Report = (text) => send({ progress: text });
  send({ outcome: await OPS[op](name, o, report) });
}

const BIN = join(PACKAGE_ROOT, "bin/multiwan.js");

/** The parent's side: one worker process for `name`; its crash is that stack's failure, nobody else's. */
function runWorker(op: FleetOp, name: string, o: FleetOptions): Promise<Outcome> {
  const args = [BIN, "fleet-worker", op, name, "--cwd", o.cwd, ...(o.diff ? ["--diff"] : []), ...(o.refresh === false ? ["--no-refresh"] : [])];
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
  // Each worker selects its stack: the project's selected stack is put back afterwards.
  const selected = ENGINE_OPS.includes(op) ? await selectedStack(o.cwd) : undefined;
  try {
    return await mapLimit(stacks, o.parallel, async (name) => {
      const t0 = Date.now();
      o.progress(name, "starting");
      const row = { stack: name, ...(await runWorker(op, name, o)), seconds: (Date.now() - t0) / 1000 };
      o.progress(name, `${row.result} in ${row.seconds.toFixed(1)} s${row.result === "ok" ? ` (${row.changes})` : ""}`);
      return row;
    });
  } finally {
    if (selected) await (await workspace(o.cwd)).selectStack(selected);
  }
}

export function fleetTable(rows: FleetRow[]): string {
  const head = ["STACK", "GATEWAYS", "CHANGES", "DURATION", "RESULT"];
  const cells = rows.map((r) => [r.stack, r.gateways === null ? "-" : String(r.gateways), r.changes || "-", `${r.seconds.toFixed(1)} s`, r.result]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd();
  const failed = rows.filter((r) => r.error);
  const details = failed.flatMap((r) => ["", `${r.stack} ${r.result}:`, ...r.error!.split("\n").map((l) => `  ${l}`)]);
  const results = (result: FleetRow["result"]) => `${rows.filter((r) => r.result === result).length} ${result}`;
  const total = `${count(rows.length, "stack")}: ${["ok", "drifted", "degraded", "failed"].map((r) => results(r as FleetRow["result"])).join(", ")}`;
  return [line(head), ...cells.map(line), ...details, "", total].join("\n");
}

/** 1 when any stack failed, else 2 when any drifted or is degraded, else 0 (as `drift` and `status`). */
export function fleetExitCode(rows: FleetRow[]): number {
  if (rows.some((r) => r.result === "failed")) return 1;
  return rows.some((r) => r.result === "drifted" || r.result === "degraded") ? 2 : 0;
}
