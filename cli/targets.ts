// Which gateways a command reaches: stacks of the project (their state says what was pushed), or a
// site file with a key file (what `render` would push). Shared by `drift` and `status`.
import type { Command } from "commander";
import { readFileSync } from "node:fs";
import { fileTargets, stackTargets, type DriftTarget } from "./drift";
import { selectedStack, stackNames } from "./workspace";

export interface TargetOptions {
  stack: string[];
  all?: boolean;
  cwd: string;
  config?: string;
  key?: string;
  passphraseFile?: string;
  gateway?: string;
  json?: boolean;
  parallel: string;
}

export interface Targets {
  /** Sorted by stack and gateway. */
  targets: DriftTarget[];
  /** Stacks named (or selected) whose state holds no pushed gateway. */
  notDeployed: string[];
}

/** The stacks the options name: --stack, --all, else the project's selected stack. */
async function stacksOf(opts: TargetOptions): Promise<string[]> {
  if (opts.all) return stackNames(opts.cwd);
  if (opts.stack.length) return opts.stack;
  const selected = await selectedStack(opts.cwd);
  if (!selected) throw new Error(`no stack selected in ${opts.cwd}: say --stack NAME (repeatable), --all, or --config FILE --key FILE`);
  return [selected];
}

/** The --key's passphrase: from --passphrase-file (its first line), else MULTIWAN_SSH_PASSPHRASE. */
function keyPassphrase(opts: TargetOptions): string | undefined {
  if (opts.passphraseFile) return readFileSync(opts.passphraseFile, "utf8").split(/\r?\n/)[0];
  return process.env.MULTIWAN_SSH_PASSPHRASE || undefined;
}

/** The gateways the options name (stacks' state, or a site file). */
export async function resolveTargets(opts: TargetOptions): Promise<Targets> {
  let targets: DriftTarget[];
  const notDeployed: string[] = [];
  if (opts.config) {
    targets = fileTargets(opts.config, opts.key, keyPassphrase(opts));
  } else {
    const stacks = await stacksOf(opts);
    const perStack = await Promise.all(stacks.map((s) => stackTargets(s, opts.cwd)));
    notDeployed.push(...stacks.filter((_, i) => !perStack[i].length));
    targets = perStack.flat();
  }
  if (opts.gateway) {
    const names = [...new Set(targets.map((t) => t.gateway))].sort();
    // A misspelt name must not read as "nothing wrong" (an empty table, exit 0).
    if (names.length && !names.includes(opts.gateway)) throw new Error(`no gateway named "${opts.gateway}" (have: ${names.join(", ")})`);
    targets = targets.filter((t) => t.gateway === opts.gateway);
  }
  targets.sort((a, b) => `${a.stack ?? ""} ${a.gateway}`.localeCompare(`${b.stack ?? ""} ${b.gateway}`));
  return { targets, notDeployed };
}

const notDeployedMessage = (stack: string) => `${stack}: not deployed (no multiwan gateway in the stack's state)`;

/**
 * `drift` and `status`: read every target, print the rows (a table, or JSON), then each stack with
 * nothing deployed, which is an error (exit 1) like an unreachable gateway.
 */
export async function reportTargets<Row>(
  opts: TargetOptions,
  read: (targets: DriftTarget[], parallel: number) => Promise<Row[]>,
  table: (rows: Row[]) => string,
  exitCode: (rows: Row[]) => number,
): Promise<number> {
  const { targets, notDeployed } = await resolveTargets(opts);
  const rows = await read(targets, parallelism(opts.parallel));
  if (rows.length || !notDeployed.length) console.log(opts.json ? JSON.stringify(rows, null, 2) : table(rows));
  for (const stack of notDeployed) console.error(notDeployedMessage(stack));
  return notDeployed.length ? 1 : exitCode(rows);
}

/** The target options `drift` has, for any command that reaches gateways. */
export function withTargetOptions(cmd: Command): Command {
  return cmd
    .option("--stack <name>", "a stack of the Pulumi project in --cwd (repeatable; default: the selected stack)", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--all", "every stack of the project")
    .option("--cwd <dir>", "the Pulumi project directory", ".")
    .option("--config <file>", "instead of stacks: a site file (what `render` would push)")
    .option("--key <file>", "with --config: the SSH private key file (not needed with connection.agent: the ssh-agent at SSH_AUTH_SOCK)")
    .option("--passphrase-file <file>", "with --key: a file whose first line is the key's passphrase (or set MULTIWAN_SSH_PASSPHRASE)")
    .option("--gateway <name>", "only this gateway")
    .option("--json", "machine-readable output")
    .option("--parallel <n>", "SSH sessions at once", "20");
}

/** A `--parallel` value: a positive count, 1 for anything else. */
export const parallelism = (value: string) => Math.max(1, Math.floor(Number(value)) || 1);
