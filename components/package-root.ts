// The package's own directory, found the same way from the TypeScript sources (components/, cli/)
// and from the built files (dist/components/, dist/cli/), so templates and the CLI entry are found
// in a source checkout and in an installed package alike.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

function find(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, "utf8")).name === "multiwan") return dir;
    if (dirname(dir) === dir) throw new Error(`multiwan: no package.json of multiwan above ${from}`);
  }
}

export const PACKAGE_ROOT = find(__dirname);
