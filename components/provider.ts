// The package's own Pulumi provider: what makes `multiwan:index:Gateway` usable from Pulumi YAML,
// Python and every other language (see provider/pulumi-resource-multiwan). It constructs the same
// Gateway component a TypeScript program builds in-process, and serves the component's push as the
// custom resource `multiwan:index:Push` with the same create/read/update/delete as the dynamic one.
import { runtime, type Inputs, type ComponentResourceOptions } from "@pulumi/pulumi";
import type { Provider } from "@pulumi/pulumi/provider";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Gateway, GATEWAY_TYPE, type GatewayArgs } from "./gateway";
import { PACKAGE_ROOT } from "./package-root";
import { pushProvider, PUSH_SECRETS, PUSH_TYPE } from "./push";

const VERSION: string = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")).version;

const any = (description: string) => ({ $ref: "pulumi.json#/Any", description });

/** The schema other languages see; `config` is checked by the component's own zod schema. */
export const SCHEMA = {
  name: "multiwan",
  version: VERSION,
  description: "Weighted, connection-sticky multi-uplink load balancing with failover for Linux gateways",
  resources: {
    [GATEWAY_TYPE]: {
      isComponent: true,
      description: "One gateway: its bundle planned, rendered and pushed over SSH with confirm-or-rollback.",
      inputProperties: {
        config: any("one gateway as in `multiwan:site`'s `gateways[]` (see docs/configuration.md)"),
        privateKey: { type: "string", secret: true, description: "the SSH private key (omit with `connection.agent: true`)" },
        passphrase: { type: "string", secret: true, description: "the private key's passphrase, if it has one" },
      },
      requiredInputs: ["config"],
      properties: {
        fingerprint: { type: "string", description: "SHA-256 over every file of the bundle" },
        links: any("each link's mark and routing table"),
        applied: { type: "string", description: "what the gateway's apply.sh reported" },
      },
      required: ["fingerprint", "links", "applied"],
    },
  },
};

// The engine hands this provider secrets (the private key, its passphrase) as marked values, and takes back as
// secret only what is marked: so each result marks the key again, as state must never hold it plain.
function revealed<T>(v: T): T {
  if (Array.isArray(v)) return v.map(revealed) as T;
  if (!v || typeof v !== "object") return v;
  if (runtime.isRpcSecret(v)) return revealed(runtime.unwrapRpcSecret(v));
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revealed(x)])) as T;
}
function keysHidden<T extends object | undefined>(v: T): T {
  if (!v) return v;
  const marked = Object.entries(v).map(([k, x]) => [k, PUSH_SECRETS.includes(k) && x !== undefined ? { [runtime.specialSigKey]: runtime.specialSecretSig, value: x } : x]);
  return Object.fromEntries(marked) as T;
}

/** `urn:pulumi:stack::project::parent$type::name`: only the push is a custom resource here. */
function checkType(urn: string): void {
  const type = urn.split("::").at(-2)?.split("$").at(-1);
  if (type !== PUSH_TYPE) throw new Error(`multiwan: unknown resource type ${type} (${urn})`);
}

export const multiwanProvider: Provider = {
  version: VERSION,
  schema: JSON.stringify(SCHEMA),
  async construct(name: string, type: string, inputs: Inputs, options: ComponentResourceOptions) {
    if (type !== GATEWAY_TYPE) throw new Error(`multiwan: unknown component ${type}`);
    const gateway = new Gateway(name, inputs as unknown as GatewayArgs, options, "provider");
    return { urn: gateway.urn, state: { fingerprint: gateway.fingerprint, links: gateway.links, applied: gateway.applied } };
  },
  async diff(id, urn, olds, news) {
    checkType(urn);
    return pushProvider.diff!(id, revealed(olds), revealed(news));
  },
  async create(urn, inputs) {
    checkType(urn);
    const r = await pushProvider.create(revealed(inputs));
    return { ...r, outs: keysHidden(r.outs) };
  },
  async read(id, urn, props) {
    checkType(urn);
    const r = await pushProvider.read!(id, revealed(props));
    return { ...r, props: keysHidden(r.props), inputs: keysHidden(r.inputs) };
  },
  async update(id, urn, olds, news) {
    checkType(urn);
    const r = await pushProvider.update!(id, revealed(olds), revealed(news));
    return { ...r, outs: keysHidden(r.outs) };
  },
  async delete(id, urn, props) {
    checkType(urn);
    return pushProvider.delete!(id, revealed(props));
  },
};
