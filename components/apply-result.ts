// apply.sh's answer to its caller: one line on stdout, `multiwan-result {JSON}`; its human log goes
// to stderr. The push confirms with the token and reports the rule count.

export const RESULT_TAG = "multiwan-result";

/**
 * `applied`: `bundle` is the fingerprint of the files applied, as bundleFingerprint computes it;
 * `token` comes with MULTIWAN_CONFIRM_TIMEOUT. `rejected`: the command refused or failed, and says
 * why (an apply keeps or restores the previous state).
 */
export type ApplyResult =
  | { result: "applied"; rules: number; bundle: string; token?: string }
  | { result: "confirmed" | "restored" | "removed" | "rolled-back" | "kept" }
  | { result: "rejected"; reason: string };

/**
 * The result line of apply.sh's output, or undefined when there is none or it is malformed (the
 * script died where it could not report). The token goes into the confirm command: hex only.
 */
export function parseApplyResult(stdout: string): ApplyResult | undefined {
  const line = stdout.split("\n").find((l) => l.startsWith(`${RESULT_TAG} `));
  if (!line) return undefined;
  let r: any;
  try {
    r = JSON.parse(line.slice(RESULT_TAG.length + 1));
  } catch {
    return undefined;
  }
  if (r?.result === "applied") {
    const valid = Number.isInteger(r.rules) && typeof r.bundle === "string" && (r.token === undefined || /^[0-9a-f]+$/.test(r.token));
    return valid ? r : undefined;
  }
  if (r?.result === "rejected") return typeof r.reason === "string" ? r : undefined;
  return ["confirmed", "restored", "removed", "rolled-back", "kept"].includes(r?.result) ? r : undefined;
}
