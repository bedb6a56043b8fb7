// The push's inputs for a lab site's first gateway, wired as the Gateway component wires them: for
// tests that drive pushProvider directly, without the Pulumi engine.
import { parseSite } from "../components/config";
import { planGateway } from "../components/plan";
import type { PushInputs } from "../components/push";
import { sshConnection } from "../components/remote";
import { bundleFingerprint, renderBundle } from "../components/render";

export function labPushInputs(site: unknown, privateKey: string): PushInputs {
  const gw = parseSite(site).gateways[0];
  const plan = planGateway(gw);
  const files = renderBundle(plan);
  return {
    gateway: gw.name,
    target: sshConnection(gw.connection),
    privateKey,
    installDir: plan.installDir,
    root: plan.root,
    rollbackAfter: gw.connection.rollbackAfter,
    files,
    fingerprint: bundleFingerprint(files),
  };
}
