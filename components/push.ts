// Pushing a bundle to a gateway: a resource provider over SSH (ssh2), run as a dynamic provider in
// TypeScript programs and by the package's provider plugin elsewhere (see PushKind). The rendered
// files are the resource's inputs, so `pulumi preview --diff` shows each changed rule line.
//
// Why not @pulumi/command's remote.Command: it has no Read, so `pulumi refresh` could never see
// drift, and one command cannot apply on one connection and confirm from a fresh one.
//
// Safe apply, like iptables-apply: one connection stages the bundle and runs `apply.sh` with a
// rollback armed on the gateway; a second, fresh connection confirms. If the new rules cut the
// management path, the confirmation cannot arrive and the gateway rolls itself back.
import * as pulumi from "@pulumi/pulumi";
import { parseApplyResult } from "./apply-result";
import { LAYOUT, under } from "./layout";
import { probeGateway } from "./probe";
import { ConnectError, runRemote, type SshTarget } from "./remote";
import { tarFiles } from "./tar";

export interface PushInputs {
  gateway: string;
  target: Omit<SshTarget, "privateKey">;
  privateKey: string;
  /** `<root>/etc/multiwan`: where apply.sh installs the bundle. */
  installDir: string;
  root: string;
  rollbackAfter: number;
  files: Record<string, string>;
  fingerprint: string;
}

export interface PushOutputs extends PushInputs {
  /** The rule count of apply.sh's result line, as `applied (24 rules)`. */
  applied: string;
  /** Differences a refresh found on the gateway (empty after a push): see drift.ts. */
  drift: string[];
}

/** Stage under the install root (root-only, not a world-writable directory), unpack, apply. */
function applyCommand(p: PushInputs): string {
  const stage = under(p.root, LAYOUT.stageDir);
  return [
    "set -eu",
    "umask 077",
    `mkdir -p ${stage}`,
    `dir=$(mktemp -d ${stage}/push.XXXXXX)`,
    `trap 'rm -rf "$dir"' EXIT`,
    `tar -x -C "$dir"`,
    `MULTIWAN_CONFIRM_TIMEOUT=${p.rollbackAfter} sh "$dir/apply.sh"`,
  ].join("\n");
}

async function push(p: PushInputs): Promise<PushOutputs> {
  const target = { ...p.target, privateKey: p.privateKey };
  const applied = await runRemote(target, applyCommand(p), tarFiles(p.files)).catch((e: Error) => {
    throw new Error(
      e instanceof ConnectError && !e.afterReady
        ? `${p.gateway}: cannot connect, nothing was changed: ${e.message}`
        : `${p.gateway}: lost the connection while applying (${e.message}); if the new rules were applied, ` +
            `the gateway rolls back to its previous state within ${p.rollbackAfter} s`,
    );
  });
  if (applied.code !== 0) {
    throw new Error(`${p.gateway}: apply failed, the previous state is kept:\n${applied.stderr.trim()}`);
  }
  const result = parseApplyResult(applied.stdout);
  if (result?.result !== "applied" || !result.token) {
    throw new Error(`${p.gateway}: apply.sh gave no confirmation token:\n${applied.stdout}${applied.stderr}`);
  }
  if (result.bundle !== p.fingerprint) {
    // Not confirmed: the gateway rolls back what it applied.
    throw new Error(
      `${p.gateway}: the gateway applied bundle ${result.bundle}, not the one sent (${p.fingerprint}); ` +
        `it rolls back to its previous state within ${p.rollbackAfter} s`,
    );
  }
  try {
    const confirmed = await runRemote(target, `sh ${p.installDir}/apply.sh confirm ${result.token}`);
    if (confirmed.code !== 0) throw new ConnectError(confirmed.stderr.trim());
  } catch (e) {
    throw new Error(
      `${p.gateway}: the new rules were applied, but a fresh SSH connection could not confirm them ` +
        `(${(e as Error).message}); the gateway rolls back to its previous state within ${p.rollbackAfter} s`,
    );
  }
  return { ...p, applied: `applied (${result.rules} rules)`, drift: [] };
}

export const pushProvider: pulumi.dynamic.ResourceProvider<PushInputs, PushOutputs> = {
  async diff(_id, olds, news) {
    const moved = ["host", "port"].filter((k) => olds.target[k as "host"] !== news.target[k as "host"]);
    if (olds.installDir !== news.installDir) moved.push("installDir");
    const changed =
      moved.length > 0 ||
      olds.fingerprint !== news.fingerprint ||
      JSON.stringify(olds.target) !== JSON.stringify(news.target) ||
      olds.privateKey !== news.privateKey ||
      olds.rollbackAfter !== news.rollbackAfter;
    // Drift alone (a refresh saw the gateway differ): push again to repair it. "Unknown" makes the
    // engine diff the old inputs, which carry the drift (see read), against the new ones itself;
    // so `preview --diff` and `refresh --diff` show just the drift lines, not the whole bundle
    // around them (a dynamic provider cannot return a detailed diff of its own).
    const repair = olds.drift?.length > 0;
    // A new host or root is a new installation: remove the old one first (both would own MWAN-*).
    return { changes: changed ? true : repair ? undefined : false, replaces: moved, deleteBeforeReplace: true };
  },
  async create(inputs) {
    const outs = await push(inputs);
    return { id: `${inputs.gateway}@${inputs.target.host}`, outs };
  },
  async update(_id, _olds, news) {
    return { outs: await push(news) };
  },
  /**
   * `pulumi refresh`: probe the gateway; what differs from the pushed bundle shows up as `drift`,
   * in the outputs and in the inputs (the pushed ones otherwise unchanged) for the diff above.
   */
  async read(id, props) {
    const { applied: _a, drift: _d, ...pushed } = props!;
    const report = await probeGateway({ ...pushed.target, privateKey: pushed.privateKey }, pushed);
    const drift = report.status === "in-sync" ? [] : report.drift.map((d) => `${report.status}: ${d}`);
    const inputs = drift.length ? { ...pushed, drift } : pushed;
    return { id, props: { ...props!, drift }, inputs: inputs as PushOutputs };
  },
  async delete(_id, props) {
    const script = `${props.installDir}/apply.sh`;
    const r = await runRemote({ ...props.target, privateKey: props.privateKey }, `if [ -f ${script} ]; then sh ${script} remove; fi`);
    if (r.code !== 0) throw new Error(`${props.gateway}: remove failed:\n${r.stderr.trim()}`);
  },
};

export type GatewayPushArgs = { [K in keyof PushInputs]: pulumi.Input<PushInputs[K]> };

/**
 * Where pushProvider runs. "dynamic": in a TypeScript program, as a dynamic resource (the provider
 * code travels in the state, nothing else to install). "provider": as `multiwan:index:Push` of the
 * package's own provider plugin (provider.ts), for programs in other languages, whose projects have
 * no node_modules for a dynamic provider to load from.
 */
export type PushKind = "dynamic" | "provider";
export const PUSH_TYPE = "multiwan:index:Push";

/** The bundle installed on one gateway. */
export interface GatewayPush {
  readonly applied: pulumi.Output<string>;
  readonly fingerprint: pulumi.Output<string>;
}

class DynamicPush extends pulumi.dynamic.Resource implements GatewayPush {
  declare readonly applied: pulumi.Output<string>;
  declare readonly fingerprint: pulumi.Output<string>;
}

class ProviderPush extends pulumi.CustomResource implements GatewayPush {
  declare readonly applied: pulumi.Output<string>;
  declare readonly fingerprint: pulumi.Output<string>;
}

export function gatewayPush(name: string, args: GatewayPushArgs, opts: pulumi.CustomResourceOptions, kind: PushKind): GatewayPush {
  const props = { ...args, applied: undefined, drift: undefined };
  const options = { ...opts, additionalSecretOutputs: ["privateKey"] };
  return kind === "dynamic" ? new DynamicPush(pushProvider, name, props, options) : new ProviderPush(PUSH_TYPE, name, props, options);
}
