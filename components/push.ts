// Pushing a bundle to a gateway: a resource provider over SSH (ssh2), run as a dynamic provider in
// TypeScript programs and by the package's provider plugin elsewhere (see PushKind). The rendered
// files are the resource's inputs, so `pulumi preview --diff` shows each changed rule line.
//
// Why not @pulumi/command's remote.Command: it has no Read, so `pulumi refresh` could never see
// drift, and one command cannot apply on one connection and confirm from a fresh one.
//
// Safe apply, like iptables-apply: one connection stages the bundle and runs `apply.sh` with a
// rollback armed on the gateway; a second, fresh connection confirms. If the new rules cut the
// management path, the confirmation cannot arrive and the gateway rolls itself back. apply.sh runs
// detached on the gateway, so a session lost mid-apply decides nothing there: the push then says the
// outcome is pending (the watchdog's to settle), and "the previous state is kept" only when
// apply.sh itself answered `rejected`.
import * as pulumi from "@pulumi/pulumi";
import { parseApplyResult, RESULT_TAG } from "./apply-result";
import { LAYOUT, under } from "./layout";
import { probeGateway } from "./probe";
import { ConnectError, runRemote, type SshConnection, type SshTarget } from "./remote";
import { tarFiles } from "./tar";

export interface PushInputs {
  gateway: string;
  target: SshConnection;
  /** Secrets (PUSH_SECRETS): absent when the ssh-agent authenticates / the key has no passphrase. */
  privateKey?: string;
  passphrase?: string;
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

/** The inputs that must never be in state in plain text. */
export const PUSH_SECRETS = ["privateKey", "passphrase"];

/** Where and how to reach the gateway, with the secrets. */
export function sshTarget(p: Pick<PushInputs, "target" | "privateKey" | "passphrase">): SshTarget {
  return { ...p.target, privateKey: p.privateKey, passphrase: p.passphrase };
}

/**
 * Stage under the install root (root-only, not a world-writable directory), unpack, apply. apply.sh
 * runs detached from this session and removes the staged copy when it ends; a bundle that cannot be
 * unpacked is refused here, in apply.sh's words, before anything ran.
 */
function applyCommand(p: PushInputs): string {
  const stage = under(p.root, LAYOUT.stageDir);
  const refused = JSON.stringify({ result: "rejected", reason: `cannot unpack the bundle into ${stage} (disk full?); nothing was changed` });
  return [
    "umask 077",
    `dir=$(mkdir -p ${stage} && mktemp -d ${stage}/push.XXXXXX) && tar -x -C "$dir" || {`,
    `  [ -z "$dir" ] || rm -rf "$dir"`,
    `  echo '${RESULT_TAG} ${refused}'`,
    "  exit 1",
    "}",
    `MULTIWAN_CONFIRM_TIMEOUT=${p.rollbackAfter} MULTIWAN_STAGED=1 exec sh "$dir/apply.sh"`,
  ].join("\n");
}

/** An outcome this push cannot know: the gateway's watchdog decides it. */
const pending = (p: PushInputs, unless: string) =>
  `the outcome is pending: unless ${unless}, the gateway rolls back to its previous state within ${p.rollbackAfter} s`;

/** An error's message, for ours (ssh2's words when a session dropped). */
const said = (e: unknown) => (e instanceof Error ? e.message : String(e));

async function push(p: PushInputs): Promise<PushOutputs> {
  const target = sshTarget(p);
  // A session lost after it was open (the client's network, sshd killed, exit status 255, no
  // result line) says nothing about the gateway: apply.sh runs on there to the end or its rollback.
  const applied = await runRemote(target, applyCommand(p), tarFiles(p.files)).catch((e: unknown) => {
    if (e instanceof ConnectError && !e.afterReady) throw new Error(`${p.gateway}: cannot connect, nothing was changed: ${e.message}`);
    throw new Error(`${p.gateway}: the SSH session was lost during the apply (${said(e)}); ${pending(p, "the apply is confirmed")}`);
  });
  const result = parseApplyResult(applied.stdout);
  const log = applied.stderr.trim();
  if (result?.result === "rejected") {
    throw new Error(`${p.gateway}: apply failed, the previous state is kept: ${result.reason}${log ? `\n${log}` : ""}`);
  }
  if (result?.result !== "applied" || !result.token) {
    throw new Error(
      `${p.gateway}: apply.sh ended without a result (exit status ${applied.code}): ${pending(p, "the apply is confirmed")}\n` +
        `${applied.stdout}${applied.stderr}`.trim(),
    );
  }
  if (result.bundle !== p.fingerprint) {
    // Not confirmed: the gateway rolls back what it applied.
    throw new Error(
      `${p.gateway}: the gateway applied bundle ${result.bundle}, not the one sent (${p.fingerprint}); ` +
        `it rolls back to its previous state within ${p.rollbackAfter} s`,
    );
  }
  const confirmed = await runRemote(target, `sh ${p.installDir}/apply.sh confirm ${result.token}`).catch((e: unknown) => {
    if (e instanceof ConnectError && !e.afterReady) {
      throw new Error(
        `${p.gateway}: the new rules were applied, but a fresh SSH connection could not confirm them (${e.message}); ` +
          `the gateway rolls back to its previous state within ${p.rollbackAfter} s`,
      );
    }
    throw new Error(`${p.gateway}: the new rules were applied, but the session confirming them was lost (${said(e)}); ${pending(p, "the confirmation arrived")}`);
  });
  const answer = parseApplyResult(confirmed.stdout);
  if (answer?.result === "rejected") {
    throw new Error(`${p.gateway}: the new rules were applied, but a fresh SSH connection could not confirm them (${answer.reason}); they are not kept`);
  }
  if (answer?.result !== "confirmed") {
    throw new Error(
      `${p.gateway}: the new rules were applied, but their confirmation got no answer (exit status ${confirmed.code}); ` +
        `${pending(p, "the confirmation arrived")}\n${confirmed.stderr.trim()}`.trim(),
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
      olds.passphrase !== news.passphrase ||
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
    const report = await probeGateway(sshTarget(pushed), pushed);
    const drift = report.status === "in-sync" ? [] : report.drift.map((d) => `${report.status}: ${d}`);
    const inputs = drift.length ? { ...pushed, drift } : pushed;
    return { id, props: { ...props!, drift }, inputs: inputs as PushOutputs };
  },
  async delete(_id, props) {
    const script = `${props.installDir}/apply.sh`;
    const r = await runRemote(sshTarget(props), `if [ -f ${script} ]; then sh ${script} remove; fi`);
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
  const options = { ...opts, additionalSecretOutputs: PUSH_SECRETS };
  return kind === "dynamic" ? new DynamicPush(pushProvider, name, props, options) : new ProviderPush(PUSH_TYPE, name, props, options);
}
