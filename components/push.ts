// Pushing a bundle to a gateway: a Pulumi dynamic provider over SSH (ssh2). The rendered files are
// the resource's inputs, so `pulumi preview --diff` shows each changed rule line.
//
// Why not @pulumi/command's remote.Command: its provider plugin (pulumi-resource-command) cannot be
// built here (the Go module proxy refuses it), and it has no Read, so `pulumi refresh` could never
// see drift; a dynamic provider's read runs on refresh.
//
// Safe apply, like iptables-apply: one connection stages the bundle and runs `apply.sh` with a
// rollback armed on the gateway; a second, fresh connection confirms. If the new rules cut the
// management path, the confirmation cannot arrive and the gateway rolls itself back.
import * as pulumi from "@pulumi/pulumi";
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
  /** What apply.sh reported, e.g. `applied (24 rules)`. */
  applied: string;
  /** Differences a refresh found on the gateway (empty after a push): see drift.ts. */
  drift: string[];
}

/** Stage under the install root (root-only, not a world-writable directory), unpack, apply. */
function applyCommand(p: PushInputs): string {
  const stage = `${p.root.replace(/\/$/, "")}/var/lib/multiwan`;
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
  const token = /^confirm-token: (\w+)$/m.exec(applied.stdout)?.[1];
  if (!token) throw new Error(`${p.gateway}: apply.sh gave no confirmation token:\n${applied.stdout}${applied.stderr}`);
  try {
    const confirmed = await runRemote(target, `sh ${p.installDir}/apply.sh confirm ${token}`);
    if (confirmed.code !== 0) throw new ConnectError(confirmed.stderr.trim());
  } catch (e) {
    throw new Error(
      `${p.gateway}: the new rules were applied, but a fresh SSH connection could not confirm them ` +
        `(${(e as Error).message}); the gateway rolls back to its previous state within ${p.rollbackAfter} s`,
    );
  }
  const report = applied.stderr.split("\n").find((l) => l.includes("applied (")) ?? "";
  return { ...p, applied: report.replace(/^multiwan\[[^\]]*\]: /, ""), drift: [] };
}

export const pushProvider: pulumi.dynamic.ResourceProvider<PushInputs, PushOutputs> = {
  async diff(_id, olds, news) {
    const moved = ["host", "port"].filter((k) => olds.target[k as "host"] !== news.target[k as "host"]);
    if (olds.installDir !== news.installDir) moved.push("installDir");
    const changed =
      moved.length > 0 ||
      olds.drift?.length > 0 || // a refresh saw the gateway differ: push again to repair it
      olds.fingerprint !== news.fingerprint ||
      JSON.stringify(olds.target) !== JSON.stringify(news.target) ||
      olds.privateKey !== news.privateKey ||
      olds.rollbackAfter !== news.rollbackAfter;
    // A new host or root is a new installation: remove the old one first (both would own MWAN-*).
    return { changes: changed, replaces: moved, deleteBeforeReplace: true };
  },
  async create(inputs) {
    const outs = await push(inputs);
    return { id: `${inputs.gateway}@${inputs.target.host}`, outs };
  },
  async update(_id, _olds, news) {
    return { outs: await push(news) };
  },
  /** `pulumi refresh`: probe the gateway; what differs from the pushed bundle shows up as `drift`. */
  async read(id, props) {
    const report = await probeGateway({ ...props!.target, privateKey: props!.privateKey }, props!);
    return { id, props: { ...props!, drift: report.status === "in-sync" ? [] : report.drift.map((d) => `${report.status}: ${d}`) } };
  },
  async delete(_id, props) {
    const script = `${props.installDir}/apply.sh`;
    const r = await runRemote({ ...props.target, privateKey: props.privateKey }, `if [ -f ${script} ]; then sh ${script} remove; fi`);
    if (r.code !== 0) throw new Error(`${props.gateway}: remove failed:\n${r.stderr.trim()}`);
  },
};

export type GatewayPushArgs = { [K in keyof PushInputs]: pulumi.Input<PushInputs[K]> };

/** The bundle installed on one gateway. */
export class GatewayPush extends pulumi.dynamic.Resource {
  declare readonly applied: pulumi.Output<string>;
  declare readonly fingerprint: pulumi.Output<string>;

  constructor(name: string, args: GatewayPushArgs, opts?: pulumi.CustomResourceOptions) {
    super(pushProvider, name, { ...args, applied: undefined, drift: undefined }, {
      ...opts,
      additionalSecretOutputs: ["privateKey"],
    });
  }
}
