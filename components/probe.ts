// Drift over SSH: run the read-only probe on a gateway and compare; unreachable is its own answer.
import { compareProbe, probeCommand, type DriftReport, type GatewayProbe } from "./drift";
import { ConnectError, runRemote, type SshTarget } from "./remote";

export async function probeGateway(target: SshTarget, probe: GatewayProbe): Promise<DriftReport> {
  try {
    const r = await runRemote(target, probeCommand(probe));
    if (r.code !== 0) return { status: "unreachable", drift: [`probe failed (${r.code}): ${r.stderr.trim()}`] };
    return compareProbe(probe, r.stdout);
  } catch (e) {
    if (e instanceof ConnectError) return { status: "unreachable", drift: [e.message] };
    throw e;
  }
}
