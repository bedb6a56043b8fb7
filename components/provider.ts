// The package's own Pulumi provider: what makes `multiwan:index:Gateway` usable from Pulumi YAML,
// Python and every other language (`pulumi package add <this package>`). It constructs the same
// Gateway component a TypeScript program builds in-process, and serves the component's push as the
// custom resource `multiwan:index:Push` with the same create/read/update/delete as the dynamic one.
import type * as pulumi from "@pulumi/pulumi";
import type { Provider } from "@pulumi/pulumi/provider";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Gateway, GATEWAY_TYPE, type GatewayArgs } from "./gateway";
import { PACKAGE_ROOT } from "./package-root";
import { pushProvider, PUSH_TYPE } from "./push";

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
        privateKey: { type: "string", secret: true, description: "the SSH private key" },
      },
      requiredInputs: ["config", "privateKey"],
      properties: {
        fingerprint: { type: "string", description: "SHA-256 over every file of the bundle" },
        links: any("each link's mark and routing table"),
        applied: { type: "string", description: "what the gateway's apply.sh reported" },
      },
      required: ["fingerprint", "links", "applied"],
    },
  },
};

// The engine hands secrets (the private key) to a provider that accepts them as marked values.
const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270";
function plain<T>(v: T): T {
  if (Array.isArray(v)) return v.map(plain) as T;
  if (!v || typeof v !== "object") return v;
  const o = v as Record<string, unknown>;
  if (o[SECRET_SIG] === SECRET_VALUE) return plain(o.value) as T;
  return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, plain(x)])) as T;
}

/** `urn:pulumi:stack::project::parent$type::name`: only the push is a custom resource here. */
function checkType(urn: string): void {
  const type = urn.split("::").at(-2)?.split("$").at(-1);
  if (type !== PUSH_TYPE) throw new Error(`multiwan: unknown resource type ${type} (${urn})`);
}

export const multiwanProvider: Provider = {
  version: VERSION,
  schema: JSON.stringify(SCHEMA),
  async construct(name: string, type: string, inputs: pulumi.Inputs, options: pulumi.ComponentResourceOptions) {
    if (type !== GATEWAY_TYPE) throw new Error(`multiwan: unknown component ${type}`);
    const gateway = new Gateway(name, inputs as unknown as GatewayArgs, options, "provider");
    return { urn: gateway.urn, state: { fingerprint: gateway.fingerprint, links: gateway.links, applied: gateway.applied } };
  },
  async diff(id, urn, olds, news) {
    checkType(urn);
    return pushProvider.diff!(id, plain(olds), plain(news));
  },
  async create(urn, inputs) {
    checkType(urn);
    return pushProvider.create(plain(inputs));
  },
  async read(id, urn, props) {
    checkType(urn);
    return pushProvider.read!(id, plain(props));
  },
  async update(id, urn, olds, news) {
    checkType(urn);
    return pushProvider.update!(id, plain(olds), plain(news));
  },
  async delete(id, urn, props) {
    checkType(urn);
    return pushProvider.delete!(id, plain(props));
  },
};
