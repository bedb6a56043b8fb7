// The Pulumi project a user runs `multiwan` in, through the Automation API. The project's own
// Pulumi.yaml and program (whatever else it composes with its gateways) run as `pulumi up` runs
// them, through the language host of its runtime (pulumi-language-nodejs for TypeScript): an
// operation on a stack never swaps the user's program for another and so never deletes the rest.
import { LocalWorkspace, type Stack } from "@pulumi/pulumi/automation";
import { existsSync } from "node:fs";
import { delimiter, join, resolve } from "node:path";
import { PACKAGE_ROOT } from "../components/package-root";

const TOOLS_BIN = join(PACKAGE_ROOT, ".tools/pulumi/bin");

/**
 * The Go-built CLI of scripts/pulumi-toolchain.sh, when present, wins over any `pulumi` on PATH,
 * for this process and every child (the CLI also finds pulumi-resource-pulumi-nodejs there).
 */
export function usePulumiToolchain(): void {
  const path = process.env.PATH ?? "";
  if (existsSync(join(TOOLS_BIN, "pulumi")) && !path.split(delimiter).includes(TOOLS_BIN)) {
    process.env.PATH = [TOOLS_BIN, path].join(delimiter);
  }
  process.env.PULUMI_SKIP_UPDATE_CHECK ??= "true";
  process.env.PULUMI_DIY_BACKEND_NO_LEGACY_WARNING ??= "true";
}

/**
 * Throws a clear message, not ENOENT from deep inside, when a Pulumi binary (the CLI, or a plugin
 * such as the language host a project's program needs) is not reachable.
 */
export function requirePulumi(binary = "pulumi"): void {
  usePulumiToolchain();
  if (!(process.env.PATH ?? "").split(delimiter).some((d) => d && existsSync(join(d, binary)))) {
    throw new Error(`no ${binary} found on PATH: install the Pulumi CLI (in a multiwan checkout, scripts/install.sh builds it into .tools/pulumi/bin)`);
  }
}

export async function workspace(cwd: string): Promise<LocalWorkspace> {
  usePulumiToolchain();
  return LocalWorkspace.create({ workDir: resolve(cwd) });
}

/** A shell-style glob (`*`, `?`, `[abc]`) as an anchored regular expression. */
export function globPattern(glob: string): RegExp {
  return new RegExp(`^${glob.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`);
}

/** The project's stack names, sorted, filtered by a glob (`*`, `?`) when given. */
export async function stackNames(cwd: string, glob = "*"): Promise<string[]> {
  const re = globPattern(glob);
  const names = (await (await workspace(cwd)).listStacks()).map((s) => s.name);
  return names.filter((n) => re.test(n)).sort();
}

/** The stack the project has selected (`pulumi stack select`), if any. */
export async function selectedStack(cwd: string): Promise<string | undefined> {
  return (await (await workspace(cwd)).stack())?.name;
}

/** A stack to run operations on. Like `pulumi stack select`, it becomes the project's selected one. */
export async function selectStack(cwd: string, name: string): Promise<Stack> {
  usePulumiToolchain();
  return LocalWorkspace.selectStack({ stackName: name, workDir: resolve(cwd) });
}

/** What the engine said about a failed command: its `error:` lines, else the whole message. */
export function engineMessage(thrown: unknown): string {
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  const errors = message.split("\n").filter((l) => l.startsWith("error: ")).map((l) => l.slice(7));
  return errors.length ? [...new Set(errors)].join("\n") : message;
}
