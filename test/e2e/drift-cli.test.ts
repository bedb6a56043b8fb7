// `multiwan drift` from a site file over real SSH: in sync, drifted (exit 2, rule by rule), and a
// gateway it cannot reach (exit 1, reported as unreachable, not as in sync and not as a crash).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { stringify } from "yaml";
import { deploy, labSite } from "../../lab/deploy";
import { withManagedGateways } from "../../lab/managed";
import { describeAsRoot } from "../helpers/root";

const BIN = join(__dirname, "..", "..", "bin", "multiwan.js");

function multiwan(args: string[], netns?: string) {
  const argv = netns ? ["ip", "netns", "exec", netns, process.execPath, BIN, ...args] : [process.execPath, BIN, ...args];
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describeAsRoot("multiwan drift --config", () => {
  it("says in sync, then names a hand edit and exits 2; an unreachable gateway exits 1", async () => {
    await withManagedGateways(["port"], async ([g], key) => {
      const scratch = mkdtempSync(join(tmpdir(), "mwt-drift-"));
      try {
        const site = labSite(g.lab, { weights: [3, 1] });
        site.gateways[0].connection = { host: g.address, hostKey: g.sshd.hostKey } as never;
        await deploy(g.lab, site, { daemon: true });
        const config = join(scratch, "site.yaml");
        const keyFile = join(scratch, "key");
        writeFileSync(config, stringify(site));
        writeFileSync(keyFile, key.privateKey, { mode: 0o600 });

        const clean = multiwan(["drift", "--config", config, "--key", keyFile]);
        expect(clean.stdout).toMatch(/^labgw\s+in-sync$/m);
        expect(clean.code).toBe(0);

        await g.lab.sh(g.lab.ns.gw, "iptables -t nat -A MWAN-POST -s 198.18.9.0/24 -o wan1 -j MASQUERADE", { check: true });
        const drifted = multiwan(["drift", "--config", config, "--key", keyFile, "--json"]);
        expect(drifted.code).toBe(2);
        expect(JSON.parse(drifted.stdout)).toEqual([
          { gateway: "labgw", status: "drifted", drift: ["extra iptables nat MWAN-POST: -A MWAN-POST -s 198.18.9.0/24 -o wan1 -j MASQUERADE"], variant: "isp1+isp2" },
        ]);

        // From a namespace with only loopback nothing can be reached, and nothing leaves the machine.
        const isolated = `${g.lab.prefix}-lo`;
        spawnSync("ip", ["netns", "add", isolated]);
        try {
          spawnSync("ip", ["-n", isolated, "link", "set", "lo", "up"]);
          const away = multiwan(["drift", "--config", config, "--key", keyFile], isolated);
          expect(away.code).toBe(1);
          expect(away.stdout).toMatch(/^labgw\s+unreachable\s+1$/m);
          expect(away.stdout).toContain(`labgw: ${g.address}:22:`);
        } finally {
          spawnSync("ip", ["netns", "del", isolated]);
        }
      } finally {
        rmSync(scratch, { recursive: true, force: true });
      }
    });
  }, 120_000);
});
