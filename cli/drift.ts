// `multiwan drift`: probe every gateway of one stack, all stacks, or a site file, in parallel, and
// compare each with what was pushed (stacks: the bundle in the stack's state) or would be (file).
import type { Deployment } from "@pulumi/pulumi/automation";
import { readFileSync } from "node:fs";
import type { DriftReport } from "../components/drift";
import type { GatewayProbe } from "../components/probe-protocol";
import { GATEWAY_TYPE } from "../components/gateway";
import { planGateway } from "../components/plan";
import { probeGateway } from "../components/probe";
import { sshTarget, type PushOutputs } from "../components/push";
import { sshConnection, type SshTarget } from "../components/remote";
import { renderBundle } from "../components/render";
import { loadSiteFile } from "../components/site-file";
import { mapLimit } from "./pool";
import { workspace } from "./workspace";

export interface DriftTarget {
  stack?: string;
  gateway: string;
  target: SshTarget;
  probe: GatewayProbe;
}

export interface DriftRow extends DriftReport {
  stack?: string;
  gateway: string;
}

/** A value of `stack export --show-secrets`: secrets stay wrapped, their plaintext JSON-encoded. */
function plain(value: unknown): any {
  const wrapped = value as { plaintext?: string } | null;
  return wrapped && typeof wrapped === "object" && typeof wrapped.plaintext === "string" ? JSON.parse(wrapped.plaintext) : value;
}

interface StateResource {
  urn: string;
  type: string;
  parent?: string;
  outputs?: PushOutputs;
}

/**
 * The outputs of each gateway's push in a stack's state: the children of Gateway components that
 * carry a pushed bundle, whatever their type (a dynamic resource, or the provider's push).
 */
export function pushedGateways(state: Deployment): PushOutputs[] {
  const resources: StateResource[] = state.deployment?.resources ?? [];
  const gateways = new Set(resources.filter((r) => r.type === GATEWAY_TYPE).map((r) => r.urn));
  return resources.filter((r) => r.parent && gateways.has(r.parent) && r.outputs?.installDir && r.outputs?.files).map((r) => r.outputs!);
}

/** The gateways of a stack as last pushed (none: the stack is not deployed). */
export async function stackTargets(stack: string, cwd: string): Promise<DriftTarget[]> {
  return pushedGateways(await (await workspace(cwd)).exportStack(stack)).map((o) => ({
    stack,
    gateway: o.gateway,
    target: sshTarget({ target: o.target, privateKey: plain(o.privateKey), passphrase: plain(o.passphrase) }),
    probe: { files: o.files },
  }));
}

/**
 * The gateways of a site file, as `render` would produce them, reached with the key in `keyFile`
 * (optional for gateways with `connection.agent`) and its passphrase, if it has one.
 */
export function fileTargets(configFile: string, keyFile?: string, passphrase?: string): DriftTarget[] {
  const privateKey = keyFile === undefined ? undefined : readFileSync(keyFile, "utf8");
  const gateways = loadSiteFile(configFile).gateways;
  const keyless = gateways.filter((gw) => !gw.connection.agent).map((gw) => gw.name);
  if (!privateKey && keyless.length) {
    throw new Error(`--config needs --key FILE (the SSH private key), or connection.agent: true on ${keyless.join(", ")}`);
  }
  return gateways.map((gw) => {
    return {
      gateway: gw.name,
      target: { ...sshConnection(gw.connection), privateKey, passphrase },
      probe: { files: renderBundle(planGateway(gw)) },
    };
  });
}

/** Probe with at most `parallel` SSH sessions at once. */
export function probeAll(targets: DriftTarget[], parallel: number): Promise<DriftRow[]> {
  return mapLimit(targets, parallel, async (t) => ({ ...(t.stack ? { stack: t.stack } : {}), gateway: t.gateway, ...(await probeGateway(t.target, t.probe)) }));
}

export function driftTable(rows: DriftRow[]): string {
  const withStack = rows.some((r) => r.stack);
  const head = [...(withStack ? ["STACK"] : []), "GATEWAY", "STATUS", "CHANGES"];
  const cells = rows.map((r) => [...(withStack ? [r.stack ?? ""] : []), r.gateway, r.status, r.status === "in-sync" ? "" : String(r.drift.length)]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((v, i) => v.padEnd(widths[i])).join("  ").trimEnd();
  const details = rows.flatMap((r) => r.drift.map((d) => `  ${r.gateway}: ${d}`));
  return [line(head), ...cells.map(line), ...(details.length ? ["", ...details] : [])].join("\n");
}

/** 1 when a gateway could not be checked, else 2 when any drifted, else 0. */
export function driftExitCode(rows: DriftRow[]): number {
  if (rows.some((r) => r.status === "unreachable")) return 1;
  return rows.some((r) => r.status === "drifted") ? 2 : 0;
}
