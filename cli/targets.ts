// Which gateways a command reaches: stacks of the project (their state says what was pushed), or a
// site file with a key file (what `render` would push). Shared by `drift` and `status`.
import type { Command } from "commander";
import { fileTargets, stackTargets, type DriftTarget } from "./drift";
import { stackNames } from "./workspace";

export interface TargetOptions {
  stack: string[];
  all?: boolean;
  cwd: string;
  config?: string;
  key?: string;
  gateway?: string;
  json?: boolean;
  parallel: string;
}

/** The gateways the options name (stacks' state, or a site file), sorted by stack and gateway. */
export async function resolveTargets(opts: TargetOptions): Promise<DriftTarget[]> {
  let targets: DriftTarget[];
  if (opts.config) {
    if (!opts.key) throw new Error("--config needs --key FILE (the SSH private key)");
    targets = fileTargets(opts.config, opts.key);
  } else {
    const stacks = opts.all ? await stackNames(opts.cwd) : opts.stack;
    if (!stacks.length) throw new Error("say which gateways: --stack NAME (repeatable), --all, or --config FILE --key FILE");
    targets = (await Promise.all(stacks.map((s) => stackTargets(s, opts.cwd)))).flat();
  }
  if (opts.gateway) targets = targets.filter((t) => t.gateway === opts.gateway);
  return targets.sort((a, b) => `${a.stack ?? ""} ${a.gateway}`.localeCompare(`${b.stack ?? ""} ${b.gateway}`));
}

/** The target options `drift` has, for any command that reaches gateways. */
export function withTargetOptions(cmd: Command): Command {
  return cmd
    .option("--stack <name>", "a stack of the Pulumi project in --cwd (repeatable)", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--all", "every stack of the project")
    .option("--cwd <dir>", "the Pulumi project directory", ".")
    .option("--config <file>", "instead of stacks: a site file (what `render` would push)")
    .option("--key <file>", "with --config: the SSH private key file")
    .option("--gateway <name>", "only this gateway")
    .option("--json", "machine-readable output")
    .option("--parallel <n>", "SSH sessions at once", "20");
}


/** A `--parallel` value: a positive count, 1 for anything else. */
export const parallelism = (value: string) => Math.max(1, Math.floor(Number(value)) || 1);
