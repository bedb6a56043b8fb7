// Drift over SSH: run the read-only probe on a gateway and compare; unreachable is its own answer.
import { compareProbe, type DriftReport } from "./drift";
import { probeCommand, type GatewayProbe } from "./probe-protocol";
import { ConnectError, runRemote, type SshTarget } from "./remote";

export async function probeGateway(target: SshTarget, probe: GatewayProbe): Promise<DriftReport> {
  let command: string;
  try {
    command = probeCommand(probe);
  } catch (e) {
    // No usable manifest (a bundle pushed by an older multiwan): the gateway cannot be checked, which
    // is `unreachable` (exit 1, and a push on the next `pulumi up`), never a silent in-sync.
    return { status: "unreachable", drift: [(e as Error).message] };
  }
  try {
    const r = await runRemote(target, command);
    if (r.code !== 0) return { status: "unreachable", drift: [`probe failed (${r.code}): ${r.stderr.trim()}`] };
    return compareProbe(probe, r.stdout);
  } catch (e) {
    if (e instanceof ConnectError) return { status: "unreachable", drift: [e.message] };
    throw e;
  }
}
