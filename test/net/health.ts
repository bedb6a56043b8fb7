// Reading what the health daemon reports on a lab gateway.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Lab } from "../../lab/lab";

export function healthLog(lab: Lab): string {
  try {
    return readFileSync(join(lab.root, "var", "log", "multiwan-health.log"), "utf8");
  } catch {
    return "";
  }
}

/** Poll `condition` every 50 ms until it holds; throws after `timeoutMs`. */
export async function waitFor(what: string, condition: () => boolean, timeoutMs: number): Promise<number> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - start;
}
