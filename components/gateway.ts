// The Gateway component: one gateway of a site, validated, planned and rendered at deploy time and
// pushed over SSH. The constructor only wires: all decisions are in plan.ts, all text in templates/.
import * as pulumi from "@pulumi/pulumi";
import { ConfigError, parseConnection, parseGateway, type Connection, type GatewayInput } from "./config";
import { planGateway } from "./plan";
import { gatewayPush, type PushKind } from "./push";
import { sshConnection } from "./remote";
import { bundleFingerprint, renderBundle } from "./render";

export const GATEWAY_TYPE = "multiwan:index:Gateway";

/** A gateway's config as written (defaults not yet applied); connection values may be outputs. */
export type GatewayConfigInput = Omit<GatewayInput, "connection"> & {
  connection: { [K in keyof GatewayInput["connection"]]: pulumi.Input<GatewayInput["connection"][K]> };
};

export interface GatewayArgs {
  /** One gateway, as in `multiwan:site`'s `gateways[]`: validated by the constructor. */
  config: GatewayConfigInput;
  /** The SSH private key, a secret (`multiwan:sshPrivateKey`); optional with `connection.agent`. */
  privateKey?: pulumi.Input<string>;
  /** The private key's passphrase, if it has one: a secret (`multiwan:sshPrivateKeyPassphrase`). */
  passphrase?: pulumi.Input<string>;
}

export interface LinkInfo {
  mark: string;
  table: number;
}

/** No output or promise anywhere inside (a bastion's host key may come from another resource). */
function isKnown(v: unknown): boolean {
  if (pulumi.Output.isInstance(v) || v instanceof Promise) return false;
  return !v || typeof v !== "object" || Object.values(v).every(isKnown);
}

/**
 * The connection's known values, for the check and plan made now: an unknown host stands in as
 * "pending", other unknown values are left to their defaults (an unknown host key: not required
 * yet). Everything is checked again once known.
 */
function knownConnection(connection: GatewayConfigInput["connection"] | undefined): Record<string, unknown> | undefined {
  if (!connection || typeof connection !== "object") return connection;
  const known = Object.fromEntries(Object.entries(connection).filter(([, v]) => isKnown(v)));
  if (!isKnown(connection.host)) known.host = "pending";
  if (!isKnown(connection.hostKey)) known.insecureSkipHostKeyCheck = true;
  return known;
}

export class Gateway extends pulumi.ComponentResource {
  /** SHA-256 over every file of the bundle: changes whenever anything pushed changes. */
  readonly fingerprint: pulumi.Output<string>;
  /** Each link's mark and routing table. */
  readonly links: pulumi.Output<Record<string, LinkInfo>>;
  /** What the gateway's apply.sh reported. */
  readonly applied: pulumi.Output<string>;

  /** `push`: how the bundle travels; the package's own provider passes "provider" (see push.ts). */
  constructor(name: string, args: GatewayArgs, opts?: pulumi.ComponentResourceOptions, push: PushKind = "dynamic") {
    super(GATEWAY_TYPE, name, {}, opts);
    const fail = (e: unknown): never => {
      if (e instanceof ConfigError) throw new pulumi.ResourceError(`${name}: ${e.message}`, this, true);
      throw e;
    };
    if (pulumi.Output.isInstance(args.config) || args.config instanceof Promise) {
      throw new pulumi.ResourceError(`${name}: config must be a plain object: only values under config.connection may come from other resources`, this, true);
    }
    const { connection, ...rest } = args.config ?? ({} as GatewayConfigInput);
    let gw;
    try {
      gw = parseGateway({ ...rest, connection: knownConnection(connection) });
    } catch (e) {
      fail(e);
    }
    const plan = planGateway(gw!);
    const files = renderBundle(plan);
    const fingerprint = bundleFingerprint(files);
    // Checked again once every value is known: the same schema, the same messages.
    const resolved: pulumi.Output<Connection> = pulumi.output(connection as pulumi.Input<object>).apply((c) => {
      try {
        return parseConnection(c);
      } catch (e) {
        return fail(e);
      }
    });
    const pushed = gatewayPush(
      `${name}-push`,
      {
        gateway: gw!.name,
        target: resolved.apply(sshConnection),
        ...(args.privateKey === undefined ? {} : { privateKey: pulumi.secret(args.privateKey) }),
        ...(args.passphrase === undefined ? {} : { passphrase: pulumi.secret(args.passphrase) }),
        installDir: plan.installDir,
        root: plan.root,
        rollbackAfter: resolved.apply((c) => c.rollbackAfter),
        files,
        fingerprint,
      },
      { parent: this },
      push,
    );
    this.fingerprint = pushed.fingerprint;
    this.links = pulumi.output(Object.fromEntries(plan.links.map((l) => [l.name, { mark: l.fwmark, table: l.table }])));
    this.applied = pushed.applied;
    this.registerOutputs({ fingerprint: this.fingerprint, links: this.links, applied: this.applied });
  }
}
