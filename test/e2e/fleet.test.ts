// `multiwan fleet` over site stacks of one project, each a namespace gateway behind a real sshd,
// with the real engine running the project's own program (its index.ts composes the gateways with
// a resource of its own, which fleet must leave alone). Broken on purpose: site-b's config (fails
// preview and up) and site-d's pinned host key (previews fine, fails on the gateway). The others
// must still be previewed and deployed, and the summary and exit code must say which failed and why.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { initSiteStack } from "../../lab/stack";
import { withManagedGateways, type ManagedGateway } from "../../lab/managed";
import { managedGateway } from "../../lab/site";
import { describeWithHosts, REPO, toolchain } from "../helpers/engine";

const site = (g: ManagedGateway, weights: number[]) => ({ gateways: [managedGateway(g, "gw1", weights, { rollbackAfter: 8 })] });

/** A user's project "sites": the repo's shared defaults, and a program of its own (this package's modules, as installed). */
function writeProject(dir: string): void {
  const { config } = parse(readFileSync(join(REPO, "Pulumi.yaml"), "utf8"));
  writeFileSync(join(dir, "Pulumi.yaml"), stringify({ name: "sites", runtime: "nodejs", main: "index.ts", config }));
  writeFileSync(
    join(dir, "index.ts"),
    [
      `import * as pulumi from "@pulumi/pulumi";`,
      `import { siteProgram } from ${JSON.stringify(join(REPO, "components/program"))};`,
      `export const gateways = siteProgram();`,
      `export const extra = new pulumi.ComponentResource("sites:index:Extra", "extra").urn;`,
    ].join("\n"),
  );
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "sites", private: true }));
  writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ extends: join(REPO, "tsconfig.json"), files: ["index.ts"] }));
  symlinkSync(join(REPO, "node_modules"), join(dir, "node_modules"));
}

// Each stack runs the project's own program, through its language host.
describeWithHosts(["pulumi-language-nodejs"], "multiwan fleet", () => {
  it("previews and deploys every stack it can, names the one it cannot, and repairs drift in one up", async () => {
    const { path } = toolchain([]);
    await withManagedGateways(["port", "port", "port"], async (gws, key) => {
      const dir = mkdtempSync(join(tmpdir(), "mwt-fleet-"));
      const env = {
        ...process.env,
        PATH: path,
        PULUMI_HOME: join(dir, ".home"),
        PULUMI_BACKEND_URL: `file://${join(dir, ".state")}`,
        PULUMI_CONFIG_PASSPHRASE: "multiwan-fleet-test",
        PULUMI_DIY_BACKEND_NO_LEGACY_WARNING: "true",
      };
      try {
        writeProject(dir);
        mkdirSync(join(dir, ".state"));
        initSiteStack(dir, "site-a", site(gws[0], [3, 1]), key.privateKey, env);
        // Broken on purpose: a weight of 0 is refused with its field path.
        initSiteStack(dir, "site-b", site(gws[1], [0, 1]), key.privateKey, env);
        initSiteStack(dir, "site-c", site(gws[2], [1, 1]), key.privateKey, env);
        // site-b's gateway (never deployed), pinned to another gateway's host key. Created last, so
        // it is the project's selected stack.
        const impostor = site(gws[1], [1, 1]);
        impostor.gateways[0].connection.hostKey = gws[0].sshd.hostKey;
        initSiteStack(dir, "site-d", impostor, key.privateKey, env);
        const multiwan = (...args: string[]) => {
          const r = spawnSync(process.execPath, [join(REPO, "bin/multiwan.js"), ...args, "--cwd", dir], { env, encoding: "utf8", timeout: 300_000 });
          console.log(r.stdout + r.stderr);
          return { code: r.status, out: r.stdout, err: r.stderr };
        };
        const fleet = (...args: string[]) => multiwan("fleet", ...args, "--parallel", "4");
        const row = (out: string, stack: string) => out.split("\n").find((l) => l.startsWith(`${stack} `))?.split(/\s{2,}/);

        const preview = fleet("preview");
        expect(preview.code).toBe(1);
        // The stack, the gateway, its push and the project's own resource.
        expect(row(preview.out, "site-a")).toEqual(["site-a", "1", "4 create", expect.stringMatching(/s$/), "ok"]);
        expect(row(preview.out, "site-c")).toEqual(["site-c", "1", "4 create", expect.stringMatching(/s$/), "ok"]);
        expect(row(preview.out, "site-d")?.at(-1)).toBe("ok");
        expect(row(preview.out, "site-b")?.at(-1)).toBe("failed");
        expect(preview.out).toMatch(/site-b failed:\n.*\n\s+gateways\[0\]\.links\[0\]\.weight: Too small/);
        expect(preview.out).toContain("4 stacks: 3 ok, 0 drifted, 0 degraded, 1 failed");
        // Plain progress lines when not on a terminal, one per step.
        expect(preview.err).toMatch(/^site-a\s+create gw1-push$/m);

        const up = fleet("up");
        expect(up.code).toBe(1);
        expect(row(up.out, "site-a")?.slice(1, 3)).toEqual(["1", "4 create"]);
        expect(row(up.out, "site-c")?.slice(1, 3)).toEqual(["1", "4 create"]);
        expect(row(up.out, "site-b")?.at(-1)).toBe("failed");
        expect(row(up.out, "site-d")?.at(-1)).toBe("failed");
        expect(up.out).toMatch(/site-d failed:\n.*host key does not match the pinned connection\.hostKey/);
        expect(up.out).toContain("4 stacks: 2 ok, 0 drifted, 0 degraded, 2 failed");
        // The two good sites balance; the broken one was left alone.
        for (const [g, want] of [[gws[0], { isp1: 0.75, isp2: 0.25 }], [gws[2], { isp1: 0.5, isp2: 0.5 }]] as const) {
          const results = await g.lab.openConnections(200);
          expect(g.lab.shares(results)).toEqual(want);
        }
        expect((await gws[1].lab.sh("gw", "iptables-save -t mangle")).stdout).not.toContain("MWAN");
        expect((await gws[0].lab.sh("gw", "iptables-save -t mangle")).stdout).toContain("MWAN-BALANCE");

        // A weight change on site-c: the table says how big the rule change is, per gateway.
        const stackFile = join(dir, "Pulumi.site-c.yaml");
        const settings = parse(readFileSync(stackFile, "utf8"));
        settings.config["multiwan:site"] = site(gws[2], [2, 1]);
        writeFileSync(stackFile, stringify(settings));
        const again = fleet("preview", "--stacks", "site-[ac]");
        expect(again.code).toBe(0);
        expect(again.out).toMatch(/^site-a\s+1\s+no changes\s+.*ok$/m);
        expect(again.out).toMatch(/^site-c\s+1\s+1 update, gw1 \+\d+ -\d+ lines\s+.*ok$/m);

        const status = fleet("status", "--stacks", "site-[ac]");
        expect(status.code, status.out).toBe(0);
        expect(status.out).toMatch(/^site-a\s+1\s+2\/2 links up\s+.*ok$/m);
        expect(status.out).toMatch(/^=== site-c\nSTACK\s+GATEWAY\s+LINK\s+TIER\s+STATE\s+CARRIES/m);

        await gws[0].lab.sh("gw", "ip rule del pref 1201", { check: true });
        const drift = fleet("drift", "--stacks", "site-[ac]");
        expect(drift.code).toBe(2);
        expect(drift.out).toMatch(/^site-a\s+1\s+gw1 drifted\s+.*drifted$/m);
        expect(drift.out).toMatch(/^site-c\s+1\s+in sync\s+.*ok$/m);
        expect(drift.out).toContain("missing ip rule: 1201");

        // One `fleet up`: refreshed first, the hand edit is a repair, made with site-c's change.
        const repair = fleet("up", "--stacks", "site-[ac]");
        expect(repair.code, repair.out).toBe(0);
        expect(repair.out).toMatch(/^site-a\s+1\s+1 update, gw1 repair: 1 drifted line\s+.*ok$/m);
        expect(repair.out).toMatch(/^site-c\s+1\s+1 update, gw1 \+\d+ -\d+ lines\s+.*ok$/m);
        expect(fleet("drift", "--stacks", "site-[ac]").code).toBe(0);
        // The program is the project's: its own resource is still there.
        const state = execFileSync("pulumi", ["stack", "export", "--stack", "site-a", "--cwd", dir], { env, encoding: "utf8" });
        expect(state).toContain('"type": "sites:index:Extra"');

        // `fleet refresh` records a hand edit in the state and names it; a preview then shows the
        // repair without refreshing again.
        await gws[2].lab.sh("gw", "ip rule del pref 1201", { check: true });
        const refreshed = fleet("refresh", "--stacks", "site-[ac]");
        expect(refreshed.code).toBe(2);
        expect(refreshed.out).toMatch(/^site-a\s+1\s+in sync\s+.*ok$/m);
        expect(refreshed.out).toMatch(/^site-c\s+1\s+gw1 drifted: 1 line\s+.*drifted$/m);
        expect(refreshed.out).toMatch(/^site-c drifted:\n\s+gw1 drifted: missing ip rule: 1201: /m);
        const recorded = fleet("preview", "--stacks", "site-c", "--no-refresh");
        expect(recorded.out).toMatch(/^site-c\s+1\s+1 update, gw1 repair: 1 drifted line\s+.*ok$/m);

        // Nothing pushed (site-b never got that far, site-d's push failed): not deployed, exit 1,
        // and a command without a stack named uses the project's selected one (site-d).
        const never = multiwan("drift", "--stack", "site-b");
        expect(never.code).toBe(1);
        expect(never.err).toContain("site-b: not deployed");
        const selected = multiwan("status");
        expect(selected.code).toBe(1);
        expect(selected.err).toContain("site-d: not deployed");
        const undeployed = fleet("status", "--stacks", "site-[bd]");
        expect(undeployed.code).toBe(1);
        expect(row(undeployed.out, "site-b")).toEqual(["site-b", "0", "not deployed", expect.stringMatching(/s$/), "failed"]);
        expect(row(undeployed.out, "site-d")?.slice(2)).toEqual(["not deployed", expect.stringMatching(/s$/), "failed"]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }, 900_000);
});
