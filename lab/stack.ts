// A site stack for the lab and the tests, made the way a user makes one: Pulumi.<name>.yaml with the
// site, then the SSH key as a secret, given on stdin so that it never appears in a command line.
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { usePulumiToolchain } from "../cli/workspace";

/** A new site stack in the project at `cwd`. */
export function initSiteStack(cwd: string, name: string, site: unknown, privateKey: string, env = process.env): void {
  usePulumiToolchain();
  writeFileSync(join(cwd, `Pulumi.${name}.yaml`), stringify({ config: { "multiwan:site": site } }));
  const pulumi = (args: string[], input?: string) =>
    execFileSync("pulumi", [...args, "--non-interactive"], { cwd, env, input, stdio: ["pipe", "ignore", "pipe"], timeout: 60_000 });
  pulumi(["stack", "init", name]);
  pulumi(["config", "set", "--secret", "multiwan:sshPrivateKey", "--stack", name], privateKey);
}
