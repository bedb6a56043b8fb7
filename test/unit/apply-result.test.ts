// apply.sh's one result line on stdout, and how the push reads it: apply.sh run by a local shell
// against a scratch root, with iptables, ip and sysctl faked (what they do is tested in test/net),
// and the push's SSH sessions replaced by that local shell, so that a session can be dropped at will.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { parseApplyResult } from "../../components/apply-result";
import { writeBundle } from "../../components/bundle-files";
import { planGateway } from "../../components/plan";
import { pushProvider, type PushInputs } from "../../components/push";
import { ConnectError, type RemoteResult } from "../../components/remote";
import { bundleFingerprint, renderBundle } from "../../components/render";
import { gateway } from "./fixtures";

type Run = (command: string, stdin?: Buffer) => Promise<RemoteResult>;
let sessions: Run[] = [];
vi.mock("../../components/remote", async (actual) => ({
  ...(await actual<typeof import("../../components/remote")>()),
  runRemote: (_target: unknown, command: string, stdin?: Buffer) => {
    const next = sessions.shift();
    if (!next) throw new Error("no session scripted for this command");
    return next(command, stdin);
  },
}));

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
// SLOW_RULES=N: applying (not testing) the rules takes N seconds, a window to drop the caller in.
fake("iptables-restore", 'cat >/dev/null\n[ "$1" = --test ] || [ -z "${SLOW_RULES:-}" ] || sleep "$SLOW_RULES"\n[ "$1" != --test ] || [ -z "${REJECT_RULES:-}" ]');
fake("ip", "exit 0");
fake("sysctl", '[ "$1" != -n ] || echo 0');
const fakeEnv = (env: Record<string, string> = {}) => ({ PATH: `${bin}:${process.env.PATH}`, MULTIWAN_NO_SYSTEMD: "1", ...env });

function applySh(root: string, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync("sh", [join(bundleDir, "apply.sh"), ...args], { encoding: "utf8", env: { ...fakeEnv(env), MULTIWAN_ROOT: root } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Polls `check` every 50 ms for at most `ms`; its last answer. */
async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) if (check()) return true;
  return check();
}

const applyLog = (root: string) => (existsSync(join(root, "var/log/multiwan-apply.log")) ? readFileSync(join(root, "var/log/multiwan-apply.log"), "utf8") : "");
const cmdline = (pid: string) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return ""; // ended meanwhile
  }
};
/** Processes whose command line holds `text` (the watchdog carries its token). */
const processesWith = (text: string) => readdirSync("/proc").filter((pid) => /^\d+$/.test(pid) && cmdline(pid).includes(text));

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
    expect(applyLog(root)).toContain('multiwan-result {"result":"kept"}');
  });

  it("a refused apply: rejected with the reason, and nothing installed", () => {
    const root = join(scratch, "root3");
    const r = applySh(root, [], { REJECT_RULES: "1" });
    expect(r.code).toBe(1);
    expect(parseApplyResult(r.stdout)).toEqual({ result: "rejected", reason: "the kernel rejects these IPv4 rules; nothing was changed" });
    expect(existsSync(join(root, "etc/multiwan"))).toBe(false);
  });

  it("a reason is JSON-escaped; remove reports removed", () => {
    const root = join(scratch, "root4");
    const odd = applySh(root, ['say "hi" \\ now']);
    expect(parseApplyResult(odd.stdout)).toEqual({ result: "rejected", reason: 'unknown command: say "hi" \\ now (apply, confirm, restore or remove)' });
    expect(parseApplyResult(applySh(root, ["remove"]).stdout)).toEqual({ result: "removed" });
  });
});

describe("apply.sh without its caller", () => {
  it("an apply whose caller is killed runs on to its end, logs what nobody read, and rolls back unconfirmed", async () => {
    const root = join(scratch, "root5");
    const caller = spawn("sh", [join(bundleDir, "apply.sh")], { env: { ...fakeEnv({ MULTIWAN_CONFIRM_TIMEOUT: "1", SLOW_RULES: "0.5" }), MULTIWAN_ROOT: root }, stdio: "pipe" });
    await waitFor(() => existsSync(join(root, "etc/multiwan")), 3000); // installed: the rules are being applied
    caller.kill("SIGKILL");

    expect(await waitFor(() => applyLog(root).includes('"result":"applied"'), 3000)).toBe(true);
    expect(await waitFor(() => applyLog(root).includes('multiwan-result {"result":"rolled-back"}'), 3000)).toBe(true);
    expect(existsSync(join(root, "etc/multiwan"))).toBe(false);
    expect(readdirSync(join(root, "run/multiwan")).filter((f) => f.startsWith("out."))).toEqual([]);
  });

  it("remove cancels the rollback of an apply not yet confirmed: its watchdog never wakes up into the removed files", async () => {
    const root = join(scratch, "root6");
    const applied = parseApplyResult(applySh(root, [], { MULTIWAN_CONFIRM_TIMEOUT: "1" }).stdout) as { token: string };
    expect(processesWith(applied.token)).not.toEqual([]);
    expect(parseApplyResult(applySh(root, ["remove"]).stdout)).toEqual({ result: "removed" });
    await new Promise((r) => setTimeout(r, 1500));

    expect(processesWith(applied.token)).toEqual([]);
    expect(existsSync(join(root, "run/multiwan"))).toBe(false);
    expect(existsSync(join(root, "etc/multiwan"))).toBe(false);
    expect(applyLog(root)).not.toMatch(/"result":"(kept|rolled-back)"/);
  });

  it("a staged bundle is removed when its apply ends, the installed copy stays", () => {
    const root = join(scratch, "root7");
    const staged = join(scratch, "staged");
    cpSync(bundleDir, staged, { recursive: true });
    const r = spawnSync("sh", [join(staged, "apply.sh")], { encoding: "utf8", env: { ...fakeEnv({ MULTIWAN_STAGED: "1" }), MULTIWAN_ROOT: root } });
    expect(parseApplyResult(r.stdout)).toMatchObject({ result: "applied" });
    expect(existsSync(staged)).toBe(false);
    expect(readFileSync(join(root, "etc/multiwan/apply.sh"), "utf8")).toBe(files["apply.sh"]);
  });
});

describe("the push's reading of its sessions", () => {
  // The push against a "gateway" that is this machine: each session runs its command in a local sh.
  const root = join(scratch, "pushed");
  const bundle = renderBundle(planGateway(gateway((s) => (s.gateways[0].root = root))));
  const inputs: PushInputs = {
    gateway: "gw1",
    target: { host: "192.0.2.50", port: 22, user: "root" },
    privateKey: "unused",
    installDir: `${root}/etc/multiwan`,
    root,
    rollbackAfter: 1,
    files: bundle,
    fingerprint: bundleFingerprint(bundle),
  };
  const local = (env: Record<string, string> = {}, dropAfterMs?: number): Run => (command, stdin) =>
    new Promise((resolve, reject) => {
      const sh = spawn("sh", ["-c", command], { env: fakeEnv(env) });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      sh.stdout.on("data", (b: Buffer) => out.push(b));
      sh.stderr.on("data", (b: Buffer) => err.push(b));
      sh.on("close", (code) => resolve({ code: code ?? 255, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
      sh.stdin.end(stdin);
      if (dropAfterMs !== undefined) {
        setTimeout(() => (sh.kill("SIGKILL"), reject(new ConnectError("192.0.2.50:22: connection closed", true))), dropAfterMs);
      }
    });
  const refusedConnect: Run = () => Promise.reject(new ConnectError("192.0.2.50:22: connect ETIMEDOUT"));
  const push = (...scripted: Run[]) => {
    sessions = scripted;
    return pushProvider.create(inputs).then(
      (r) => r.outs!.applied as string,
      (e: Error) => e.message,
    );
  };
  const rolledBack = () => waitFor(() => !existsSync(`${root}/etc/multiwan`) && applyLog(root).includes('"result":"rolled-back"'), 4000);
  const reset = () => rmSync(root, { recursive: true, force: true });

  it("stages, applies detached, confirms, and leaves no staged copy behind", async () => {
    reset();
    expect(await push(local(), local())).toMatch(/^applied \(\d+ rules\)$/);
    expect(readdirSync(`${root}/var/lib/multiwan`)).toEqual(["sysctl.before"]);
    expect(existsSync(`${root}/var/lib/multiwan/pending`)).toBe(false);
  });

  it("an apply session lost after it opened: pending, never 'kept'; the gateway rolls back by itself", async () => {
    reset();
    const message = await push(local({ SLOW_RULES: "0.5" }, 300));
    expect(message).toBe(
      "gw1: the SSH session was lost during the apply (192.0.2.50:22: connection closed); " +
        "the outcome is pending: unless the apply is confirmed, the gateway rolls back to its previous state within 1 s",
    );
    expect(await rolledBack()).toBe(true);
  });

  it("exit status 255 and no result line (sshd killed): pending", async () => {
    reset();
    const sshdGone: Run = (command, stdin) => local()(command, stdin).then((r) => ({ code: 255, stdout: "", stderr: r.stderr }));
    const message = await push(sshdGone);
    expect(message).toMatch(/^gw1: apply\.sh ended without a result \(exit status 255\): the outcome is pending: unless the apply is confirmed, the gateway rolls back to its previous state within 1 s/);
    expect(message).not.toContain("kept");
    expect(await rolledBack()).toBe(true);
  });

  it("only a rejected result reads as 'the previous state is kept'", async () => {
    reset();
    expect(await push(local({ REJECT_RULES: "1" }))).toMatch(/^gw1: apply failed, the previous state is kept: the kernel rejects these IPv4 rules; nothing was changed/);
    expect(await push(refusedConnect)).toBe("gw1: cannot connect, nothing was changed: 192.0.2.50:22: connect ETIMEDOUT");
    reset();
    mkdirSync(`${root}/var`, { recursive: true });
    writeFileSync(`${root}/var/lib`, ""); // the stage cannot be made
    expect((await push(local())).split("\n")[0]).toBe(`gw1: apply failed, the previous state is kept: cannot unpack the bundle into ${root}/var/lib/multiwan (disk full?); nothing was changed`);
    expect(existsSync(`${root}/etc/multiwan`)).toBe(false);
  });

  it("the confirmation: not reaching the gateway, or too late, means a rollback; losing its session means pending", async () => {
    reset();
    expect(await push(local(), refusedConnect)).toBe(
      "gw1: the new rules were applied, but a fresh SSH connection could not confirm them (192.0.2.50:22: connect ETIMEDOUT); " +
        "the gateway rolls back to its previous state within 1 s",
    );
    expect(await rolledBack()).toBe(true);

    reset();
    expect(await push(local(), local())).toMatch(/^applied/); // a previous state to roll back to
    let late: Promise<boolean> = Promise.resolve(false);
    const tooLate: Run = (command) => (late = waitFor(() => applyLog(root).includes('"result":"rolled-back"'), 4000)).then(() => local()(command));
    expect(await push(local(), tooLate)).toBe(
      "gw1: the new rules were applied, but a fresh SSH connection could not confirm them " +
        "(nothing to confirm for this token: the apply was rolled back or replaced); they are not kept",
    );
    expect(await late).toBe(true);

    reset();
    const lost: Run = () => Promise.reject(new ConnectError("192.0.2.50:22: connection closed", true));
    expect(await push(local(), lost)).toBe(
      "gw1: the new rules were applied, but the session confirming them was lost (192.0.2.50:22: connection closed); " +
        "the outcome is pending: unless the confirmation arrived, the gateway rolls back to its previous state within 1 s",
    );
    expect(await rolledBack()).toBe(true);
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
