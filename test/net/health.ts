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

export { waitFor } from "../../lab/wait";
