// apply.sh's one result line on stdout, parsed as the push parses it: apply.sh run by a local shell
// against a scratch root, with iptables, ip and sysctl faked (what they do is tested in test/net).
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseApplyResult } from "../../components/apply-result";
import { writeBundle } from "../../components/bundle-files";
import { planGateway } from "../../components/plan";
import { bundleFingerprint, renderBundle } from "../../components/render";
import { gateway } from "./fixtures";

const scratch = mkdtempSync(join(tmpdir(), "mwt-apply-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const files = renderBundle(planGateway(gateway()));
const bundleDir = join(scratch, "bundle");
writeBundle(bundleDir, files);
const bin = join(scratch, "bin");
mkdirSync(bin);
const fake = (name: string, body: string) => {
  writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
};
fake("iptables-save", "exit 0");
fake("iptables-restore", 'cat >/dev/null\n[ "$1" != --test ] || [ -z "${REJECT_RULES:-}" ]');
fake("ip", "exit 0");
fake("sysctl", "exit 0");

function applySh(root: string, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync("sh", [join(bundleDir, "apply.sh"), ...args], {
    encoding: "utf8",
    env: { PATH: `${bin}:${process.env.PATH}`, MULTIWAN_ROOT: root, MULTIWAN_NO_SYSTEMD: "1", ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("apply.sh's result line", () => {
  it("an apply: one line with the rule count and the fingerprint of the bundle it applied; the log on stderr", () => {
    const r = applySh(join(scratch, "root1"), []);
    expect(r.code).toBe(0);
    const rules = files["iptables.rules"].split("\n").filter((l) => l.startsWith("-A")).length;
    expect(r.stdout).toBe(`multiwan-result {"result":"applied","rules":${rules},"bundle":"${bundleFingerprint(files)}"}\n`);
    expect(parseApplyResult(r.stdout)).toEqual({ result: "applied", rules, bundle: bundleFingerprint(files) });
    expect(r.stderr).toContain(`multiwan[gw1]: applied (${rules} rules)`);
  });

  it("with a confirmation timeout: a token that confirms once; the watchdog then keeps the apply", () => {
    const root = join(scratch, "root2");
    const applied = parseApplyResult(applySh(root, [], { MULTIWAN_CONFIRM_TIMEOUT: "1" }).stdout);
    expect(applied).toMatchObject({ result: "applied", token: expect.stringMatching(/^[0-9a-f]{16}$/) });
    const token = (applied as { token: string }).token;
    const confirmed = applySh(root, ["confirm", token]);
    expect([confirmed.code, parseApplyResult(confirmed.stdout)]).toEqual([0, { result: "confirmed" }]);
    const again = applySh(root, ["confirm", token]);
    expect(again.code).toBe(1);
    expect(parseApplyResult(again.stdout)).toEqual({ result: "rejected", reason: "nothing to confirm for this token: the apply was rolled back or replaced" });
    execFileSync("sleep", ["1.5"]);
    expect(readFileSync(join(root, "var/log/multiwan-apply.log"), "utf8")).toContain('multiwan-result {"result":"kept"}');
  });

  it("a refused apply: rejected with the reason, and nothing installed", () => {
    const root = join(scratch, "root3");
    const r = applySh(root, [], { REJECT_RULES: "1" });
    expect(r.code).toBe(1);
    expect(parseApplyResult(r.stdout)).toEqual({ result: "rejected", reason: "the kernel rejects these rules; nothing was changed" });
    expect(spawnSync("test", ["-e", join(root, "etc/multiwan")]).status).toBe(1);
  });

  it("a reason is JSON-escaped; remove reports removed", () => {
    const root = join(scratch, "root4");
    const odd = applySh(root, ['say "hi" \\ now']);
    expect(parseApplyResult(odd.stdout)).toEqual({ result: "rejected", reason: 'unknown command: say "hi" \\ now (apply, confirm, restore or remove)' });
    expect(parseApplyResult(applySh(root, ["remove"]).stdout)).toEqual({ result: "removed" });
  });
});

describe("parseApplyResult", () => {
  it("finds the line among other output and refuses what the push must not act on", () => {
    expect(parseApplyResult('noise\nmultiwan-result {"result":"applied","rules":3,"bundle":"ab","token":"0f"}\n')).toEqual({ result: "applied", rules: 3, bundle: "ab", token: "0f" });
    for (const bad of [
      "",
      "applied (3 rules)",
      "multiwan-result {",
      'multiwan-result {"result":"applied","rules":3,"bundle":"ab","token":"0f; reboot"}',
      'multiwan-result {"result":"applied","rules":"3","bundle":"ab"}',
      'multiwan-result {"result":"rejected"}',
      'multiwan-result {"result":"whatever"}',
    ]) {
      expect(parseApplyResult(bad), bad).toBeUndefined();
    }
  });
});
