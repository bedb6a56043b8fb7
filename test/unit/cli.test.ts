import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { validSite } from "./fixtures";

const BIN = join(__dirname, "..", "..", "bin", "multiwan.js");
const EXAMPLE = join(__dirname, "..", "..", "examples", "Pulumi.seed-two-links.yaml");
const scratch = mkdtempSync(join(tmpdir(), "mwt-cli-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function multiwan(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("multiwan render", () => {
  it("writes the gateway's bundle", () => {
    const out = join(scratch, "bundle");
    const r = multiwan("render", "--config", EXAMPLE, "--gateway", "gw1", "--out", out);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^gw1: 16 files in /);
    expect(readFileSync(join(out, "iptables.rules"), "utf8")).toContain("-A MWAN-POST -s 198.18.1.0/24 -o eth1 -j SNAT --to-source 203.0.113.2");
    expect(existsSync(join(out, "variants", "isp1+isp2.rules"))).toBe(true);
  });

  it("reads the site from a Pulumi stack file too", () => {
    const stackFile = join(scratch, "Pulumi.site1.yaml");
    writeFileSync(stackFile, stringify({ config: { "multiwan:site": validSite() } }));
    const r = multiwan("render", "--config", stackFile, "--gateway", "gw1", "--out", join(scratch, "from-stack"));
    expect(r.code).toBe(0);
  });

  it("renders a stack file with the project's multiwan:defaults, as pulumi up does", () => {
    const project = mkdtempSync(join(scratch, "project-"));
    const defaults = { health: { interval: 0.2, down: 4, quality: { latencyMs: 300, window: 6 } } };
    writeFileSync(join(project, "Pulumi.yaml"), stringify({ name: "sites", runtime: "nodejs", config: { "multiwan:defaults": { value: defaults } } }));
    const site = { ...validSite(), health: { down: 6 } }; // the site's own key wins
    writeFileSync(join(project, "Pulumi.site1.yaml"), stringify({ config: { "multiwan:site": site } }));
    const out = join(project, "bundle");
    expect(multiwan("render", "--config", join(project, "Pulumi.site1.yaml"), "--gateway", "gw1", "--out", out).code).toBe(0);
    const health = readFileSync(join(out, "health.sh"), "utf8");
    expect(health).toMatch(/^interval=0.2$/m);
    expect(health).toMatch(/^down_after=6$/m);
    // The project's quality limits reach every link (the site sets none).
    expect(health.match(/^ {4}qwin=.*$/gm)).toEqual(Array(2).fill("    qwin=6 qlat=300000 qloss=-1 qrlat=240000 qrloss=-1 qflush=false ;;"));
  });

  it("exits 1 naming every bad field, and writes nothing", () => {
    const site = validSite();
    site.gateways[0].links[1].weight = 0;
    site.gateways[0].links[0].interface = "wan1;reboot";
    const file = join(scratch, "bad.yaml");
    writeFileSync(file, stringify(site));
    const out = join(scratch, "never");
    const r = multiwan("render", "--config", file, "--gateway", "gw1", "--out", out);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("invalid multiwan config (2 problems)");
    expect(r.stderr).toContain("gateways[0].links[1].weight:");
    expect(r.stderr).toContain("gateways[0].links[0].interface:");
    expect(existsSync(out)).toBe(false);
  });

  it("exits 1 for an unknown gateway, an unreadable file, or invalid YAML", () => {
    expect(multiwan("render", "--config", EXAMPLE, "--gateway", "nope", "--out", join(scratch, "x")).stderr).toContain('no gateway named "nope" (have: gw1)');
    expect(multiwan("render", "--config", join(scratch, "missing.yaml"), "--gateway", "gw1", "--out", join(scratch, "x")).code).toBe(1);
    writeFileSync(join(scratch, "broken.yaml"), "gateways: [\n");
    const r = multiwan("validate", "--config", join(scratch, "broken.yaml"));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("not valid YAML");
    // drift/status with a misspelt gateway: an error, never an empty all-clear (nothing is contacted).
    writeFileSync(join(scratch, "key"), "not a key");
    for (const cmd of ["drift", "status"]) {
      const typo = multiwan(cmd, "--config", EXAMPLE, "--key", join(scratch, "key"), "--gateway", "gw9");
      expect(typo.code).toBe(1);
      expect(typo.stderr).toContain('no gateway named "gw9" (have: gw1)');
    }
  });

  it("has --help on each command and exits 1 on a missing option", () => {
    expect(multiwan("render", "--help").stdout).toContain("--gateway <name>");
    expect(multiwan("render", "--help").code).toBe(0);
    expect(multiwan("validate", "--help").code).toBe(0);
    expect(multiwan("render", "--config", EXAMPLE).code).toBe(1);
  });
});

describe("multiwan validate", () => {
  it("summarises each gateway of a good config", () => {
    const r = multiwan("validate", "--config", EXAMPLE);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("gw1: ok (2 links: isp1=3 isp2=1)\n");
  });
});
