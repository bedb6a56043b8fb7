// multiwan as a team adopts it: `npm pack`, the tarball installed into a Pulumi project of their
// own (TypeScript, composing a Gateway with another resource), plain `pulumi up`, then the fleet
// commands on that project; and a Pulumi YAML project using the package's provider plugin.
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { withManagedGateways, type ManagedGateway } from "../../lab/managed";
import { managedGateway } from "../../lab/site";
import { describeWithHosts, REPO, TOOLS_BIN } from "../helpers/engine";

const run = promisify(execFile);
const scratch = mkdtempSync(join(tmpdir(), "mwt-pkg-"));
let tarball = "";
let files: string[] = [];

const env: NodeJS.ProcessEnv = {
  ...process.env,
  PATH: [TOOLS_BIN, process.env.PATH].join(delimiter),
  PULUMI_HOME: join(scratch, "home"),
  PULUMI_BACKEND_URL: `file://${join(scratch, "state")}`,
  PULUMI_CONFIG_PASSPHRASE: "multiwan-package-tests",
  PULUMI_SKIP_UPDATE_CHECK: "true",
  PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
  PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
  NO_COLOR: "1",
};

/** A command in `cwd`; the output (stdout + stderr) and exit code, never a throw. */
async function sh(cwd: string, cmd: string, args: string[], input?: string): Promise<{ code: number; out: string }> {
  const child = run(cmd, args, { cwd, env, timeout: 300_000, maxBuffer: 64 << 20 });
  if (input !== undefined) child.child.stdin!.end(input);
  try {
    const r = await child;
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string; message: string };
    return { code: typeof err.code === "number" ? err.code : 1, out: `${err.stdout ?? ""}${err.stderr ?? ""}${err.message}` };
  }
}

async function ok(cwd: string, cmd: string, args: string[], input?: string): Promise<string> {
  const r = await sh(cwd, cmd, args, input);
  expect(r.code, r.out).toBe(0);
  return r.out;
}

async function shares(g: ManagedGateway) {
  const results = await g.lab.openConnections(400);
  expect(results.filter((r) => !r.ok)).toEqual([]);
  return g.lab.shares(results);
}

beforeAll(async () => {
  const packed = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", scratch], { cwd: REPO, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }));
  tarball = join(scratch, packed[0].filename);
  files = packed[0].files.map((f: { path: string }) => f.path);
  console.log(`npm pack: ${files.length} files, ${packed[0].size} bytes packed, ${packed[0].unpackedSize} unpacked`);
}, 120_000);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

it("the tarball holds the built package and nothing of tests, lab, toolchain or stacks", () => {
  for (const f of ["dist/components/index.js", "dist/components/index.d.ts", "dist/cli/main.js", "bin/multiwan.js", "templates/apply.sh.mustache", "provider/pulumi-resource-multiwan", "package.json", "README.md"]) {
    expect(files).toContain(f);
  }
  expect(files.filter((f) => /^(test|lab|bench|toolchain|scripts|examples|\.tools|\.ci)\//.test(f) || /Pulumi\..*\.yaml$|\.ts$/.test(f.replace(/\.d\.ts$/, "")))).toEqual([]);
});

/** A stock `pulumi new typescript` project: its package.json and tsconfig.json, the tarball installed. */
async function typescriptProject(dir: string, program: string): Promise<void> {
  writeFileSync(join(dir, "Pulumi.yaml"), "name: mwt-adopter\nruntime: nodejs\ndescription: a team's own project\n");
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "mwt-adopter", main: "index.ts", devDependencies: { "@types/node": "^20", typescript: "^5" }, dependencies: { "@pulumi/pulumi": "3.248.0" } }));
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { strict: true, outDir: "bin", target: "es2020", module: "commonjs", moduleResolution: "node", sourceMap: true, experimentalDecorators: true, pretty: true, noFallthroughCasesInSwitch: true, noImplicitReturns: true, forceConsistentCasingInFileNames: true },
      files: ["index.ts"],
    }),
  );
  writeFileSync(join(dir, "index.ts"), program);
  await ok(dir, "npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball]);
}

// The team's program: an unrelated resource whose output is the gateway's SSH address, and a
// Gateway built from its own config.
const PROGRAM = `import * as pulumi from "@pulumi/pulumi";
import { Gateway, type GatewayConfigInput } from "multiwan";

const note: pulumi.dynamic.ResourceProvider = {
  async create(inputs) {
    return { id: "note", outs: inputs };
  },
};
class Note extends pulumi.dynamic.Resource {
  declare readonly address: pulumi.Output<string>;
  constructor(name: string, address: string) {
    super(note, name, { address }, {});
  }
}

const config = new pulumi.Config();
const gw = config.requireObject<GatewayConfigInput>("gateway");
const unrelated = new Note("unrelated-note", gw.connection.host as string);
const gateway = new Gateway(gw.name, {
  config: { ...gw, connection: { ...gw.connection, host: unrelated.address } },
  privateKey: config.requireSecret("sshKey"),
});
export const fingerprint = gateway.fingerprint;
`;

// A user's `pulumi up` runs their program through its language host.
describeWithHosts(["pulumi-language-nodejs", "pulumi-language-yaml"], "an installed package in the team's own projects", () => {
  it("TypeScript: pulumi up through the user's program, then fleet on it; Pulumi YAML through the provider plugin", async () => {
    await withManagedGateways(["port", "port"], async ([tsGw, yamlGw], key) => {
      const ts = join(scratch, "ts");
      execFileSync("mkdir", ["-p", ts, join(scratch, "state")]);
      await typescriptProject(ts, PROGRAM);
      const pulumi = (args: string[], input?: string) => sh(ts, "pulumi", [...args, "--non-interactive", "--stack", "site"], input);
      await ok(ts, "pulumi", ["stack", "init", "site", "--non-interactive"]);
      await ok(ts, "pulumi", ["config", "set", "--secret", "sshKey", "--stack", "site", "--non-interactive"], key.privateKey);

      // A hand-built bad argument fails the preview naming the field; nothing is pushed.
      const good = managedGateway(tsGw, "gw1", [3, 1], { rollbackAfter: 8 });
      const bad = { ...good, lan: { ...good.lan, interfaces: ["lan 0"] } };
      await ok(ts, "pulumi", ["config", "set-all", "--json", JSON.stringify({ gateway: { value: JSON.stringify(bad), objectValue: bad } }), "--stack", "site"]);
      const refused = await pulumi(["preview"]);
      expect(refused.code).not.toBe(0);
      expect(refused.out).toContain("config.lan.interfaces[0]: must be a Linux interface name");

      await ok(ts, "pulumi", ["config", "set-all", "--json", JSON.stringify({ gateway: { value: JSON.stringify(good), objectValue: good } }), "--stack", "site"]);
      const preview = await pulumi(["preview", "--diff"]);
      expect(preview.code, preview.out).toBe(0);
      expect(preview.out).toMatch(/\+ pulumi-nodejs:dynamic:Resource: \(create\)\n\s+\[urn=\S+::multiwan:index:Gateway\$pulumi-nodejs:dynamic:Resource::gw1-push\]/);
      expect(preview.out).toContain("iptables.rules");
      const up = await pulumi(["up", "--yes", "--skip-preview"]);
      expect(up.code, up.out).toBe(0);
      expect(await shares(tsGw)).toEqual({ isp1: 0.75, isp2: 0.25 });

      // The fleet commands run this project's program: the unrelated resource stays, all in sync.
      const multiwan = (...args: string[]) => sh(ts, process.execPath, [join(ts, "node_modules/multiwan/bin/multiwan.js"), ...args]);
      const fleetPreview = await multiwan("fleet", "preview", "--cwd", ts);
      expect(fleetPreview.code, fleetPreview.out).toBe(0);
      expect(fleetPreview.out).toMatch(/^site\s+1\s+no changes/m);
      expect(fleetPreview.out).not.toContain("delete");
      const fleetUp = await multiwan("fleet", "up", "--cwd", ts);
      expect(fleetUp.code, fleetUp.out).toBe(0);
      const state = await ok(ts, "pulumi", ["stack", "export", "--stack", "site"]);
      expect(state).toContain("::unrelated-note");
      const drift = await multiwan("drift", "--cwd", ts, "--stack", "site");
      expect(drift.code, drift.out).toBe(0);
      expect(drift.out).toMatch(/gw1\s+in-sync/);

      // Pulumi YAML: the package's provider plugin serves the component and its push.
      const yaml = join(scratch, "yaml");
      execFileSync("mkdir", ["-p", yaml]);
      const site = managedGateway(yamlGw, "gw2", [3, 1], { rollbackAfter: 8 });
      writeFileSync(
        join(yaml, "Pulumi.yaml"),
        [
          "name: mwt-yaml",
          "runtime: yaml",
          "packages:",
          `  multiwan: ${join(ts, "node_modules/multiwan/provider")}`,
          "config:",
          "  sshKey: { type: string, secret: true }",
          "resources:",
          "  gw2:",
          "    type: multiwan:index:Gateway",
          "    properties:",
          "      privateKey: ${sshKey}",
          `      config: ${JSON.stringify(site)}`,
          "outputs:",
          "  fingerprint: ${gw2.fingerprint}",
          "",
        ].join("\n"),
      );
      const y = (args: string[], input?: string) => sh(yaml, "pulumi", [...args, "--non-interactive", "--stack", "site"], input);
      await ok(yaml, "pulumi", ["stack", "init", "site", "--non-interactive"]);
      await ok(yaml, "pulumi", ["config", "set", "--secret", "sshKey", "--stack", "site", "--non-interactive"], key.privateKey);
      const yPreview = await y(["preview", "--diff"]);
      expect(yPreview.code, yPreview.out).toBe(0);
      expect(yPreview.out).toContain("multiwan:index:Push");
      expect(yPreview.out).toContain("iptables.rules");
      const yUp = await y(["up", "--yes", "--skip-preview"]);
      expect(yUp.code, yUp.out).toBe(0);
      expect(await shares(yamlGw)).toEqual({ isp1: 0.75, isp2: 0.25 });
      // Drift on the plugin's push: seen by refresh, repaired by one fleet up.
      await yamlGw.lab.sh(yamlGw.lab.ns.gw, "ip rule del pref 1201", { check: true });
      const yRefresh = await y(["refresh", "--preview-only", "--diff"]);
      expect(yRefresh.out).toContain("drifted: missing ip rule: 1201: from all fwmark 0x200/0xff00 lookup 102");
      const repair = await multiwan("fleet", "up", "--cwd", yaml);
      expect(repair.code, repair.out).toBe(0);
      expect(repair.out).toMatch(/^site\s+1\s+1 update, gw2 repair: 1 drifted line/m);
      const yDrift = await multiwan("drift", "--cwd", yaml, "--stack", "site");
      expect(yDrift.code, yDrift.out).toBe(0);
      // The plugin's results keep the key secret, refresh included.
      await ok(yaml, "pulumi", ["refresh", "--yes", "--skip-preview", "--non-interactive", "--stack", "site"]);
      const keyBody = key.privateKey.split("\n").filter((l) => l && !l.startsWith("-----")).join("");
      for (const dir of [ts, yaml]) {
        const exported = await ok(dir, "pulumi", ["stack", "export", "--stack", "site"]);
        expect(exported.replace(/\s|\\n/g, "")).not.toContain(keyBody.slice(0, 40));
      }
      const yDestroy = await y(["destroy", "--yes", "--skip-preview"]);
      expect(yDestroy.code, yDestroy.out).toBe(0);
      expect(await pulumi(["destroy", "--yes", "--skip-preview"])).toMatchObject({ code: 0 });
    });
  }, 900_000);
});
