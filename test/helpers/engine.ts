// Runs the real Pulumi engine (the `pulumi` CLI built by scripts/pulumi-toolchain.sh, with the
// pulumi-resource-* plugins found on PATH) against a Pulumi program of this project, in an
// isolated file backend and PULUMI_HOME.
//
// Why the CLI through execFile and not @pulumi/pulumi/automation's LocalWorkspace: the tests
// assert on what an engineer sees (`pulumi preview --diff` text, `pulumi stack export`), and each
// command's stdout/stderr/exit code comes back as is, with a bounded timeout per command.
//
// Why a scratch project directory: `pulumi stack init` and `pulumi config set` write
// Pulumi.<stack>.yaml next to Pulumi.yaml; the program's own directory (a fixture, or the repo
// root) must stay untouched. The scratch directory gets a copy of Pulumi.yaml whose `main` points
// back at the program's entry file.
//
// The language host: when pulumi-language-nodejs is on PATH it runs the program as usual.
// Otherwise (scripts/pulumi-toolchain.sh builds it only where a Go module proxy serves it) each
// program-running command gets `--client=ADDR` of a fresh engine-host.cjs process:
// @pulumi/pulumi's own automation-API language server evaluating the entry file with tsx.
import { execFile, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, relative, resolve } from "node:path";
import { describe } from "vitest";
import { parse, stringify } from "yaml";
import { isRoot } from "./root";

export const REPO = resolve(__dirname, "../..");
export const TOOLS_BIN = join(REPO, ".tools/pulumi/bin");
const HOST_SCRIPT = join(__dirname, "engine-host.cjs");
const BASE = ["pulumi", "pulumi-resource-pulumi-nodejs"];
export const PULUMI_VERSION = "v3.248.0";

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

export class PulumiError extends Error {
  constructor(
    readonly args: string[],
    readonly result: RunResult,
  ) {
    super(`pulumi ${args.join(" ")} exited ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`);
  }
}

export interface StackOptions {
  /** Directory holding the program's Pulumi.yaml. */
  program: string;
  stack?: string;
  /** Plain config values; keys without a namespace go to the project's. */
  config?: Record<string, string>;
  secrets?: Record<string, string>;
  /** Extra environment for the CLI and the program. */
  env?: Record<string, string>;
  /** Per-command timeout (ms); default 5 minutes. */
  timeoutMs?: number;
  /** Provider plugins the program needs besides the dynamic one; default none. */
  plugins?: string[];
  /** Destroy the stack's resources before cleaning up (default true). */
  destroy?: boolean;
}

export interface CommandOptions {
  /** Resolve with the result instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
  timeoutMs?: number;
}

export interface EngineStack {
  readonly stack: string;
  /** Scratch project directory (cwd of every command). */
  readonly workDir: string;
  readonly env: NodeJS.ProcessEnv;
  /** Any pulumi command, with --stack added; non-zero exit throws PulumiError unless allowed. */
  run(args: string[], opts?: CommandOptions): Promise<RunResult>;
  up(opts?: CommandOptions): Promise<RunResult>;
  preview(opts?: CommandOptions & { diff?: boolean }): Promise<RunResult>;
  refresh(opts?: CommandOptions & { previewOnly?: boolean; diff?: boolean }): Promise<RunResult>;
  destroy(opts?: CommandOptions): Promise<RunResult>;
  setConfig(key: string, value: string, opts?: { secret?: boolean }): Promise<void>;
  /** A structured (object or list) config value, as `multiwan:site` is. */
  setConfigObject(key: string, value: unknown): Promise<void>;
  /** Stack outputs, secrets in plain text. */
  outputs(): Promise<Record<string, unknown>>;
  /** `pulumi stack export` as text (secrets stay encrypted). */
  exportState(): Promise<string>;
}

function onPath(name: string, path: string): boolean {
  return path.split(delimiter).some((d) => d && existsSync(join(d, name)));
}

/**
 * Checks the toolchain (the CLI, the dynamic-provider plugin and `plugins`); throws, so that a test
 * fails rather than skips, when scripts/pulumi-toolchain.sh has not provided it.
 */
export function toolchain(plugins: string[] = []): { path: string; languageHost: boolean } {
  const path = [TOOLS_BIN, join(REPO, "node_modules/.bin"), process.env.PATH ?? ""].join(delimiter);
  const missing = [...BASE, ...plugins].filter((b) => !onPath(b, path));
  if (missing.length) {
    throw new Error(
      `Pulumi toolchain missing (${missing.join(", ")} not in ${TOOLS_BIN} or on PATH): run scripts/pulumi-toolchain.sh, whose output says why a binary could not be built`,
    );
  }
  // Another pulumi earlier on PATH than .tools would make every result meaningless.
  const version = execFileSync("pulumi", ["version"], { env: { ...process.env, PATH: path }, timeout: 30_000 }).toString().trim();
  if (version !== PULUMI_VERSION) {
    throw new Error(`pulumi on PATH is ${version}, not ${PULUMI_VERSION}: run scripts/pulumi-toolchain.sh`);
  }
  return { path, languageHost: onPath("pulumi-language-nodejs", path) };
}

/**
 * `describe` for tests that run a project the way a user's `pulumi up` does, through its language
 * host(s), as root. Where a host could not be built (no ../shared/goproxy and a proxy that refuses
 * it) they skip, saying which; a missing CLI still fails (toolchain throws).
 */
export function describeWithHosts(hosts: string[], name: string, fn: () => void): void {
  const missing = isRoot ? hosts.filter((h) => !onPath(h, toolchain().path)) : [];
  if (missing.length) console.warn(`${missing.join(", ")} not installed: "${name}" is skipped`);
  describe.skipIf(!isRoot || missing.length > 0)(name, fn);
}

/**
 * The file the program starts from: Pulumi.yaml `main`, else the `main` of a package.json in the
 * program's own directory, else its index.ts / index.js.
 */
export function programEntry(programDir: string): string {
  const project = parse(readFileSync(join(programDir, "Pulumi.yaml"), "utf8")) ?? {};
  const base = resolve(programDir, project.main ?? ".");
  if (/\.[cm]?[jt]s$/.test(base) && existsSync(base)) return base;
  const pkgFile = join(base, "package.json");
  const pkgMain: unknown = existsSync(pkgFile) ? JSON.parse(readFileSync(pkgFile, "utf8")).main : undefined;
  const candidates = [typeof pkgMain === "string" ? resolve(base, pkgMain) : "", join(base, "index.ts"), join(base, "index.js")];
  const found = candidates.find((f) => f && existsSync(f));
  if (!found) throw new Error(`no program entry found in ${base}`);
  return found;
}

function exec(args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<RunResult> {
  return new Promise((done) => {
    execFile(
      "pulumi",
      args,
      { cwd, env, timeout: timeoutMs, killSignal: "SIGTERM", maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean }) | null;
        const code = !e ? 0 : typeof e.code === "number" ? e.code : 1;
        const note = e?.killed ? `\n[killed after ${timeoutMs} ms]` : e && typeof e.code === "string" ? `\n[${e.message}]` : "";
        done({ stdout, stderr: stderr + note, code });
      },
    );
  });
}

/** Starts engine-host.cjs for the program and resolves with its port and a stop function. */
async function startHost(entry: string, env: NodeJS.ProcessEnv): Promise<{ port: number; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [HOST_SCRIPT, entry], { cwd: dirname(entry), env, stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const port = await new Promise<number>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("engine-host.cjs did not start in 30 s")), 30_000);
    let out: string | undefined = "";
    child.stdout!.on("data", (b: Buffer) => {
      if (out === undefined) return; // later output (the program's console.log) is drained, dropped
      out += b.toString();
      const m = /^(\d+)\n/.exec(out);
      if (m) (clearTimeout(timer), (out = undefined), ok(Number(m[1])));
    });
    child.once("exit", (code) => (clearTimeout(timer), fail(new Error(`engine-host.cjs exited ${code}`))));
  }).catch(async (e) => {
    if (child.exitCode === null) child.kill("SIGKILL");
    throw e;
  });
  return {
    port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.exitCode === null && child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

export async function withStack<T>(opts: StackOptions, fn: (s: EngineStack) => Promise<T>): Promise<T> {
  const tc = toolchain(opts.plugins);
  const programDir = resolve(opts.program);
  const stack = opts.stack ?? "dev";
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const entry = programEntry(programDir);
  const project = parse(readFileSync(join(programDir, "Pulumi.yaml"), "utf8"));
  const scratch = await mkdtemp(join(tmpdir(), "mwt-eng-pulumi-"));
  const workDir = join(scratch, "project");
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...opts.env,
    PATH: tc.path,
    PULUMI_HOME: join(scratch, "home"),
    PULUMI_BACKEND_URL: `file://${join(scratch, "state")}`,
    PULUMI_CONFIG_PASSPHRASE: "multiwan-engine-tests",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    // Plain, stable output for assertions.
    NO_COLOR: "1",
    PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
  };
  delete env.PULUMI_ACCESS_TOKEN;

  // The entry file, not its directory: for a directory `main` the CLI passes the language host
  // the entry point ".", and @pulumi/pulumi's cmd/run then runs the `main` (or `exports`) of the
  // nearest package.json above it — for a fixture without one, the repository's own package.
  // Relative to the scratch project, for a real language host; ignored with --client.
  project.main = relative(workDir, entry);

  const run = async (args: string[], o: CommandOptions = {}): Promise<RunResult> => {
    const flags = ["--stack", stack, "--non-interactive"];
    const end = args.indexOf("--"); // flags must precede a "--" argument separator
    const full = end < 0 ? [...args, ...flags] : [...args.slice(0, end), ...flags, ...args.slice(end)];
    const r = await exec(full, workDir, env, o.timeoutMs ?? timeoutMs);
    if (r.code !== 0 && !o.allowFailure) throw new PulumiError(full, r);
    return r;
  };
  // Commands that evaluate (or may load) the program: the language host, or our stand-in.
  const runProgram = async (args: string[], o: CommandOptions = {}): Promise<RunResult> => {
    if (tc.languageHost) return run(args, o);
    const host = await startHost(entry, env);
    try {
      return await run([...args, `--client=127.0.0.1:${host.port}`], o);
    } finally {
      await host.stop();
    }
  };

  const s: EngineStack = {
    stack,
    workDir,
    env,
    run,
    up: (o) => runProgram(["up", "--yes", "--skip-preview"], o),
    preview: (o) => runProgram(["preview", ...(o?.diff ? ["--diff"] : [])], o),
    refresh: (o) => runProgram(["refresh", ...(o?.previewOnly ? ["--preview-only"] : ["--yes", "--skip-preview"]), ...(o?.diff ? ["--diff"] : [])], o),
    destroy: (o) => runProgram(["destroy", "--yes", "--skip-preview"], o),
    async setConfig(key, value, o) {
      // "--" so a value such as "-----BEGIN OPENSSH PRIVATE KEY-----" is not read as a flag.
      await run(["config", "set", ...(o?.secret ? ["--secret"] : ["--plaintext"]), key, "--", value]);
    },
    async setConfigObject(key, value) {
      const json = JSON.stringify({ [key]: { value: JSON.stringify(value), objectValue: value, secret: false } });
      await run(["config", "set-all", "--json", json]);
    },
    async outputs() {
      return JSON.parse((await run(["stack", "output", "--json", "--show-secrets"])).stdout);
    },
    async exportState() {
      return (await run(["stack", "export"])).stdout;
    },
  };

  let created = false;
  try {
    await mkdir(join(scratch, "state"));
    await mkdir(workDir);
    await writeFile(join(workDir, "Pulumi.yaml"), stringify(project));
    // `stack init` is the one command without --stack; it also writes the passphrase salt into
    // the scratch Pulumi.<stack>.yaml.
    const init = await exec(["stack", "init", stack, "--non-interactive"], workDir, env, timeoutMs);
    if (init.code !== 0) throw new PulumiError(["stack", "init", stack], init);
    created = true;
    for (const [k, v] of Object.entries(opts.config ?? {})) await s.setConfig(k, v);
    for (const [k, v] of Object.entries(opts.secrets ?? {})) await s.setConfig(k, v, { secret: true });
    return await fn(s);
  } finally {
    try {
      if (created && opts.destroy !== false) await s.destroy({ allowFailure: true });
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }
}
