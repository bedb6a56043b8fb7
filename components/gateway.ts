// The Gateway component: one gateway of a site, planned and rendered at deploy time and pushed
// over SSH. The constructor only wires: all decisions are in plan.ts, all text in templates/.
import * as pulumi from "@pulumi/pulumi";
import type { Gateway as GatewayConfig } from "./config";
import { planGateway } from "./plan";
import { GatewayPush } from "./push";
import { bundleFingerprint, renderBundle } from "./render";

export interface GatewayArgs {
  /** One gateway of a site config, as `parseSite` returns it (validated, defaults filled). */
  config: GatewayConfig;
  /** The SSH private key: keep it a secret (`multiwan:sshPrivateKey`). */
  privateKey: pulumi.Input<string>;
}

export interface LinkInfo {
  mark: string;
  table: number;
}

export class Gateway extends pulumi.ComponentResource {
  /** SHA-256 over every file of the bundle: changes whenever anything pushed changes. */
  readonly fingerprint: pulumi.Output<string>;
  /** Each link's mark and routing table. */
  readonly links: pulumi.Output<Record<string, LinkInfo>>;
  /** What the gateway's apply.sh reported. */
  readonly applied: pulumi.Output<string>;

  constructor(name: string, args: GatewayArgs, opts?: pulumi.ComponentResourceOptions) {
    super("multiwan:index:Gateway", name, {}, opts);
    const plan = planGateway(args.config);
    const files = renderBundle(plan);
    const fingerprint = bundleFingerprint(files);
    const { connection } = args.config;
    const push = new GatewayPush(
      `${name}-push`,
      {
        gateway: args.config.name,
        target: {
          host: connection.host,
          port: connection.port,
          user: connection.user,
          ...(connection.insecureSkipHostKeyCheck ? {} : { hostKey: connection.hostKey }),
        },
        privateKey: pulumi.secret(args.privateKey),
        installDir: plan.installDir,
        root: plan.root,
        rollbackAfter: connection.rollbackAfter,
        files,
        fingerprint,
      },
      { parent: this },
    );
    this.fingerprint = push.fingerprint;
    this.links = pulumi.output(Object.fromEntries(plan.links.map((l) => [l.name, { mark: l.fwmark, table: l.table }])));
    this.applied = push.applied;
    this.registerOutputs({ fingerprint: this.fingerprint, links: this.links, applied: this.applied });
  }
}
