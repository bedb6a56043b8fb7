// The rendered health.sh without its main loop, its functions called by `commands` in sh: the
// daemon's own text runs, against a scratch root (MULTIWAN_ROOT) and whatever fakes `bin` holds.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Bundle } from "../../components/render";

/** health.sh's functions, then `commands`; its stdout. `bin` comes first on PATH. */
export function healthFunctions(bundle: Bundle, commands: string, o: { root?: string; bin?: string } = {}): string {
  const script = bundle["health.sh"].replace(/\nmain "\$@"\n$/, "\n");
  if (script === bundle["health.sh"]) throw new Error('health.sh no longer ends with `main "$@"`: the functions cannot be run without the loop');
  const dir = mkdtempSync(join(tmpdir(), "mwt-health-"));
  try {
    writeFileSync(join(dir, "health.sh"), `${script}${commands}\n`);
    const env = { PATH: `${o.bin ? `${o.bin}:` : ""}/usr/sbin:/usr/bin:/sbin:/bin`, ...(o.root ? { MULTIWAN_ROOT: o.root } : {}) };
    return execFileSync("sh", [join(dir, "health.sh")], { encoding: "utf8", env, stdio: ["ignore", "pipe", "pipe"] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
