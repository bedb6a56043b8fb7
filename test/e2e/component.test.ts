// The product's main path with the real Pulumi engine: `pulumi up` pushes the bundle over SSH to
// two gateways (namespaces running a real sshd), preview --diff shows rule lines, a config that
// cuts the management path rolls itself back, destroy leaves the gateways as they were.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { REPO, withStack, type EngineStack } from "../helpers/engine";
import { gatewayState } from "../../lab/deploy";
import { withManagedGateways, type ManagedGateway } from "../../lab/managed";
import { managedGateway } from "../../lab/site";
import { describeAsRoot } from "../helpers/root";

const siteOf = (gws: ManagedGateway[], weights: number[][]) => ({
  gateways: gws.map((g, i) => managedGateway(g, `gw${i + 1}`, weights[i], { rollbackAfter: 8 })),
});

async function shares(g: ManagedGateway) {
  const results = await g.lab.openConnections(400);
  expect(results.every((r) => r.ok)).toBe(true);
  return g.lab.shares(results);
}

/** `multiwan drift` over the stack's state, as a user runs it in the project directory. */
function driftCli(s: EngineStack, ...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO, "bin", "multiwan.js"), "drift", "--cwd", s.workDir, ...args], { env: s.env, encoding: "utf8", timeout: 120_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

async function upAndCheck(s: EngineStack) {
  const r = await s.up();
  expect(r.code).toBe(0);
  return r;
}

describeAsRoot("pulumi up / preview / destroy through the Gateway component", () => {
  it("configures two gateways, shows rule diffs, rolls back a cut-off, and destroys cleanly", async () => {
    // gw1 on a management port; gw2 a remote site, reached over the internet on its link 2.
    await withManagedGateways(["port", "internet"], async (gws, key) => {
      const pristine = await Promise.all(gws.map((g) => gatewayState(g.lab)));
      await withStack({ program: REPO, plugins: [], stack: "site1", secrets: { "multiwan:sshPrivateKey": key.privateKey } }, async (s) => {
        // 1. up: both gateways balance 3:1 and 1:1.
        await s.setConfigObject("multiwan:site", siteOf(gws, [[3, 1], [1, 1]]));
        const t0 = Date.now();
        await upAndCheck(s);
        console.log(`pulumi up, two gateways: ${Date.now() - t0} ms`);
        expect(await shares(gws[0])).toEqual({ isp1: 0.75, isp2: 0.25 });
        expect(await shares(gws[1])).toEqual({ isp1: 0.5, isp2: 0.5 });
        const outputs = (await s.outputs()).gateways as Record<string, { links: unknown; applied: string; fingerprint: string }>;
        expect(outputs.gw1.links).toEqual({ isp1: { mark: "0x100/0xff00", table: 101 }, isp2: { mark: "0x200/0xff00", table: 102 } });
        expect(outputs.gw1.applied).toMatch(/^applied \(\d+ rules\)$/);

        // Drift: a refresh of the untouched gateways finds nothing; a hand edit on gw1 is found,
        // named, and the next `pulumi up` repairs it.
        const inSync = driftCli(s, "--stack", "site1", "--json");
        expect(inSync.code, inSync.out).toBe(0);
        expect(JSON.parse(inSync.out).map((r: { gateway: string; status: string }) => `${r.gateway} ${r.status}`)).toEqual(["gw1 in-sync", "gw2 in-sync"]);
        const clean = await s.refresh({ previewOnly: true, diff: true });
        expect(clean.stdout).not.toContain("missing");
        expect(clean.stdout).not.toMatch(/~ .*-push/);
        const deployed = await gatewayState(gws[0].lab);
        await gws[0].lab.sh(gws[0].lab.ns.gw, "iptables -t mangle -D MWAN-PRE -i wan2 -m conntrack --ctstate NEW -j MARK --set-xmark 0x200/0xff00 && ip rule del pref 1201", { check: true });
        const cli = driftCli(s, "--all");
        expect(cli.code, cli.out).toBe(2);
        expect(cli.out).toMatch(/^site1\s+gw1\s+drifted\s+2$/m);
        expect(cli.out).toMatch(/^site1\s+gw2\s+in-sync$/m);
        expect(cli.out).toContain("gw1: missing ip rule: 1201: from all fwmark 0x200/0xff00 lookup 102");
        const drifted = await s.refresh({ previewOnly: true, diff: true });
        expect(drifted.stdout).toContain("gw1-push");
        expect(drifted.stdout).toContain("drifted: missing iptables mangle MWAN-PRE: -A MWAN-PRE -i wan2 -m conntrack --ctstate NEW -j MARK --set-xmark 0x200/0xff00");
        expect(drifted.stdout).toContain("drifted: missing ip rule: 1201: from all fwmark 0x200/0xff00 lookup 102");
        expect(drifted.stdout).not.toMatch(/~ .*gw2-push/);
        // Only the drift is shown: none of the bundle's text around it.
        expect(drifted.stdout).not.toContain("iptables.rules");
        expect(drifted.stdout.split("\n").length).toBeLessThan(40);
        await s.refresh();
        await upAndCheck(s);
        // The deleted fwmark rule also broke link 2's probes, so the health daemon took isp2 out;
        // once the repair lets them through again it brings the full split back.
        for (let i = 0; i < 40 && JSON.stringify(await gatewayState(gws[0].lab)) !== JSON.stringify(deployed); i++) {
          await new Promise((r) => setTimeout(r, 250));
        }
        expect(await gatewayState(gws[0].lab)).toEqual(deployed);
        expect((await s.refresh({ previewOnly: true, diff: true })).stdout).not.toContain("missing");

        // 2. one weight changes: the diff names the changed rule lines, on gw1 only.
        await s.setConfigObject("multiwan:site", siteOf(gws, [[1, 1], [1, 1]]));
        const preview = (await s.preview({ diff: true })).stdout;
        expect(preview).toMatch(/-\s+-A MWAN-BALANCE -m statistic --mode nth --every 4 --packet 0 -g MWAN-MARK-2/);
        expect(preview).toMatch(/\+\s+-A MWAN-BALANCE -m statistic --mode nth --every 2 --packet 0 -g MWAN-MARK-2/);
        expect(preview).toContain("gw1-push");
        expect(preview).not.toMatch(/~ .*gw2-push/);
        await upAndCheck(s);
        expect(await shares(gws[0])).toEqual({ isp1: 0.5, isp2: 0.5 });
        const again = await s.preview();
        expect(again.stdout).toMatch(/^\s+5 unchanged$/m); // the stack, 2 gateways, 2 pushes
        expect(again.stdout).not.toMatch(/to (update|create|delete|replace)/);

        // 3. a config that cuts the management path of gw2: the gateway rolls back by itself.
        const before = await gatewayState(gws[1].lab);
        const cut = siteOf(gws, [[1, 1], [1, 1]]);
        cut.gateways[1].links[1].gateway = "198.51.100.5"; // a typo: on the link's subnet, but nobody is there
        await s.setConfigObject("multiwan:site", cut);
        const failed = await s.up({ allowFailure: true });
        expect(failed.code).not.toBe(0);
        // …and says why, in ssh2's words (a lost message once read "(undefined)").
        expect(failed.stdout + failed.stderr).toMatch(/gw2: the new rules were applied, but a fresh SSH connection could not confirm them \((?!undefined)\w[^)]+\)/);
        await new Promise((r) => setTimeout(r, 10_000)); // rollbackAfter is 8 s
        expect(await gatewayState(gws[1].lab)).toEqual(before);

        // 4. an apply the host rejects (a link on an interface it does not have) changes nothing.
        const bad = siteOf(gws, [[1, 1], [1, 1]]);
        bad.gateways[0].links[1].interface = "wan9";
        await s.setConfigObject("multiwan:site", bad);
        const gw1Before = await gatewayState(gws[0].lab);
        const rejected = await s.up({ allowFailure: true });
        expect(rejected.code).not.toBe(0);
        expect(rejected.stdout + rejected.stderr).toMatch(/gw1: apply failed, the previous state is kept/);
        expect(await gatewayState(gws[0].lab)).toEqual(gw1Before);

        // Back to a good config, then destroy: both gateways as before the first up.
        await s.setConfigObject("multiwan:site", siteOf(gws, [[1, 1], [1, 1]]));
        await upAndCheck(s);
        const state = await s.exportState();
        expect(state).toContain('"parent": "urn:pulumi:site1::multiwan::multiwan:index:Gateway::gw1"');
        await s.destroy();
        for (let i = 0; i < gws.length; i++) {
          expect(await gatewayState(gws[i].lab)).toEqual(pristine[i]);
          expect(() => readFileSync(join(gws[i].lab.root, "etc/iproute2/rt_tables.d/multiwan.conf"))).toThrow();
        }

        // No private key material in the state, the engine's output or the gateways' logs.
        const keyBody = key.privateKey.split("\n").filter((l) => l && !l.startsWith("-----")).join("");
        const haystacks = [state, preview, failed.stdout, failed.stderr, ...gws.map((g) => g.sshd.log())];
        for (const text of haystacks) {
          expect(text.replace(/\s/g, "")).not.toContain(keyBody.slice(0, 40));
        }
      });
    });
  }, 600_000);
});
