// Writing a rendered bundle to a directory: what `multiwan render` produces and tests apply.
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Bundle } from "./render";

export function writeBundle(dir: string, bundle: Bundle): void {
  for (const [name, text] of Object.entries(bundle)) {
    const file = join(dir, name);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
    chmodSync(file, name.endsWith(".sh") ? 0o755 : 0o644);
  }
}
