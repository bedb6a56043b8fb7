// SSH the way operators reach gateways, against real OpenSSH servers in namespaces: host keys of
// every type pinned from `ssh-keyscan` lines, passphrase-protected keys, the ssh-agent, retries
// while sshd is not reachable yet; then `pulumi up`, drift, status and destroy as a non-root user
// with NOPASSWD sudo on a gateway reachable only through two bastions, and the same user without
// sudo rights refused with nothing changed.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { utils } from "ssh2";
import { expect, it } from "vitest";
import { stringify } from "yaml";
import { parseConnection, parseSite } from "../../components/config";
import { planGateway } from "../../components/plan";
import { pushProvider } from "../../components/push";
import { ConnectError, runRemote, sshConnection, type SshTarget } from "../../components/remote";
import { bundleFingerprint } from "../../components/render";
import { gatewayState, renderLabBundle } from "../../lab/deploy";
import { run } from "../../lab/exec";
import { createLab } from "../../lab/lab";
import { createVethNamespace } from "../../lab/netns";
import { labGateway } from "../../lab/site";
import { clientKey, startSshd, type HostKeyType } from "../../lab/sshd";
import { createUnixUser } from "../../lab/unix-user";
import { REPO, withStack, type EngineStack } from "../helpers/engine";
import { describeAsRoot } from "../helpers/root";

const BIN = join(REPO, "bin", "multiwan.js");
const PASSPHRASE = "mwt correct horse";

function multiwan(args: string[], env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 120_000, env });
  return { code: r.status, out: r.stdout + r.stderr, stdout: r.stdout };
}

/** An ed25519 key pair made by ssh-keygen, protected by PASSPHRASE: what an operator has. */
function lockedKey(dir: string) {
  const file = join(dir, "locked");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", PASSPHRASE, "-C", "mwt-locked", "-f", file], { timeout: 10_000 });
  return { file, privateKey: readFileSync(file, "utf8"), publicKey: readFileSync(`${file}.pub`, "utf8") };
}

const KEY_TYPES: HostKeyType[] = ["ed25519", "rsa", "ecdsa"];
const otherKey = (type: HostKeyType) => utils.generateKeyPairSync(type, type === "rsa" ? { bits: 2048 } : type === "ecdsa" ? { bits: 256 } : {}).public;

describeAsRoot("SSH: host keys, keys, agent, retries", () => {
  it("pins each host key type from ssh-keyscan, refuses a wrong one, takes protected keys and the agent, waits for sshd", async () => {
    const scratch = mkdtempSync(join(tmpdir(), "mwt-eng-ssh-"));
    const ns = await createVethNamespace({ name: `mwt-eng-ssh-${process.pid}`, hostCidr: "198.18.212.1/30", nsCidr: "198.18.212.2/30" });
    try {
      const locked = lockedKey(scratch);
      const sshd = await startSshd({ netns: ns.name, address: ns.nsAddress, hostKeyTypes: KEY_TYPES, authorize: [locked.publicKey], parent: scratch });
      try {
        const marker = join(scratch, "ran");
        for (const type of KEY_TYPES) {
          const line = execFileSync("ssh-keyscan", ["-t", type, ns.nsAddress], { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "ignore"] }).trim();
          expect(line).toBe(`${ns.nsAddress} ${sshd.hostKeys[type]}`);
          const target: SshTarget = { ...sshConnection(parseConnection({ host: ns.nsAddress, hostKey: line })), privateKey: sshd.privateKey };
          expect((await runRemote(target, "echo pinned")).stdout, type).toBe("pinned\n");
          const wrong = await runRemote({ ...target, hostKey: otherKey(type) }, `touch ${marker}`).catch((e) => e);
          expect(wrong, type).toBeInstanceOf(ConnectError);
          expect(wrong.message, type).toBe(`${ns.nsAddress}:22: host key does not match the pinned connection.hostKey (refusing to connect)`);
        }
        expect(existsSync(marker)).toBe(false);

        const target: SshTarget = { host: ns.nsAddress, port: 22, user: "root", hostKey: sshd.hostKeys.rsa };
        // A passphrase-protected key: works with its passphrase, a clear refusal without.
        expect((await runRemote({ ...target, privateKey: locked.privateKey, passphrase: PASSPHRASE }, "echo unlocked")).stdout).toBe("unlocked\n");
        await expect(runRemote({ ...target, privateKey: locked.privateKey }, "true")).rejects.toThrow(/passphrase-protected and no passphrase was given/);
        const site = join(scratch, "site.yaml");
        const links = [1, 2].map((i) => ({ name: `isp${i}`, interface: `wan${i}`, gateway: `203.0.113.${4 * i - 3}`, check: { targets: ["192.0.2.1"] } }));
        const gw = { name: "gw1", connection: { host: ns.nsAddress, hostKey: sshd.hostKey }, root: join(scratch, "root"), lan: { interfaces: ["lan0"], networks: ["198.18.1.0/24"] }, links };
        writeFileSync(site, stringify({ gateways: [gw] }));
        const noPass = multiwan(["drift", "--config", site, "--key", locked.file]);
        expect(noPass.code, noPass.out).toBe(1);
        expect(noPass.stdout).toMatch(/^gw1\s+unreachable\s+1$/m);
        expect(noPass.stdout).toContain("gw1: 198.18.212.2: the SSH private key is passphrase-protected and no passphrase was given");
        const passFile = join(scratch, "passphrase");
        writeFileSync(passFile, `${PASSPHRASE}\n`, { mode: 0o600 });
        // Reached and probed: nothing of multiwan is on this namespace, so every line is missing.
        const withFile = multiwan(["drift", "--config", site, "--key", locked.file, "--passphrase-file", passFile]);
        expect(withFile.stdout, withFile.out).toMatch(/^gw1\s+drifted\s+\d+$/m);
        const withEnv = multiwan(["drift", "--config", site, "--key", locked.file], { ...process.env, MULTIWAN_SSH_PASSPHRASE: PASSPHRASE });
        expect(withEnv.stdout, withEnv.out).toMatch(/^gw1\s+drifted\s+\d+$/m);
        expect(withEnv.out).not.toContain(PASSPHRASE);

        // The ssh-agent, started here: no private key given at all.
        const agentSock = join(scratch, "agent.sock");
        const agent = spawn("ssh-agent", ["-D", "-a", agentSock], { stdio: "ignore" });
        const saved = process.env.SSH_AUTH_SOCK;
        try {
          for (let i = 0; i < 50 && !existsSync(agentSock); i++) await new Promise((r) => setTimeout(r, 100));
          execFileSync("ssh-add", ["-q", join(sshd.dir, "client_ed25519")], { env: { ...process.env, SSH_AUTH_SOCK: agentSock }, timeout: 10_000 });
          process.env.SSH_AUTH_SOCK = agentSock;
          expect((await runRemote({ ...target, agent: true }, "echo agent")).stdout).toBe("agent\n");
        } finally {
          if (saved === undefined) delete process.env.SSH_AUTH_SOCK;
          else process.env.SSH_AUTH_SOCK = saved;
          agent.kill("SIGTERM");
        }

        // sshd refuses connections for half a second (a gateway rebooting): the second try gets in.
        const auth = { ...target, privateKey: sshd.privateKey };
        const reject = ["-p", "tcp", "--dport", "22", "-j", "REJECT", "--reject-with", "tcp-reset"];
        await run(["ip", "netns", "exec", ns.name, "iptables", "-I", "INPUT", ...reject], { check: true });
        setTimeout(() => void run(["ip", "netns", "exec", ns.name, "iptables", "-D", "INPUT", ...reject]), 500);
        const t0 = Date.now();
        expect((await runRemote(auth, "echo retried")).stdout).toBe("retried\n");
        expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
        // A session lost after the command started is never retried: the command ran once.
        const lost = await runRemote(auth, `echo once >> ${marker}; kill -9 $PPID`).catch((e) => e);
        expect(lost).toBeInstanceOf(ConnectError);
        expect(lost.afterReady).toBe(true);
        expect(readFileSync(marker, "utf8")).toBe("once\n");
      } finally {
        await sshd.stop();
      }
    } finally {
      await ns.remove();
      rmSync(scratch, { recursive: true, force: true });
    }
  }, 90_000);
});

/** `multiwan drift|status --stack` over the stack's state, as a user runs it in the project directory. */
function stackCli(s: EngineStack, command: string) {
  return multiwan([command, "--cwd", s.workDir, "--stack", s.stack, "--json"], s.env);
}

describeAsRoot("SSH: sudo and bastions", () => {
  it("pulumi up, drift, status and destroy as a sudo user through two bastions; without sudo rights a clear error", async () => {
    const scratch = mkdtempSync(join(tmpdir(), "mwt-eng-jump-"));
    const lab = await createLab({ links: 2 });
    const bastionNs = await createVethNamespace({ name: `mwt-eng-jump-${process.pid}`, hostCidr: "198.18.213.1/30", nsCidr: "198.18.213.2/30" });
    const user = await createUnixUser(`mwt-ssh-${process.pid % 100000}`);
    const stops: (() => Promise<void>)[] = [];
    try {
      // bastion ↔ gateway: 198.18.214.0/30, which only the bastion namespace has a route to.
      await run(["ip", "link", "add", `mwj${process.pid % 100000}`, "netns", bastionNs.name, "type", "veth", "peer", "name", "mgmt0", "netns", lab.ns.gw], { check: true });
      await run(["ip", "-n", bastionNs.name, "addr", "add", "198.18.214.1/30", "dev", `mwj${process.pid % 100000}`], { check: true });
      await run(["ip", "-n", bastionNs.name, "link", "set", `mwj${process.pid % 100000}`, "up"], { check: true });
      await lab.sh(lab.ns.gw, "ip addr add 198.18.214.2/30 dev mgmt0 && ip link set mgmt0 up", { check: true });

      const key = await clientKey(scratch);
      const locked = lockedKey(scratch);
      const start = async (o: Parameters<typeof startSshd>[0]) => {
        const d = await startSshd({ ...o, client: key, authorize: [locked.publicKey] });
        stops.push(() => d.stop());
        return d;
      };
      // Bastion 1 on the namespace's outside; bastion 2 on its loopback, reachable only from bastion 1.
      const outer = await start({ netns: bastionNs.name, address: bastionNs.nsAddress });
      const inner = await start({ netns: bastionNs.name, address: "127.0.0.1" });
      const gwSshd = await start({ netns: lab.ns.gw, address: "198.18.214.2", user: user.name, hostKeyTypes: ["ecdsa"] });
      await user.allowSudo(true);
      const connection = {
        host: "198.18.214.2",
        user: user.name,
        sudo: true,
        hostKey: gwSshd.hostKey,
        proxyJump: [{ host: bastionNs.nsAddress, user: "root", hostKey: outer.hostKey }, { host: "127.0.0.1", user: "root", hostKey: inner.hostKey }],
        rollbackAfter: 10,
      };
      const site = { gateways: [labGateway(lab, "gw1", connection, [1, 1])] };
      const direct = await runRemote({ ...sshConnection(parseConnection({ ...connection, proxyJump: undefined })), privateKey: key.privateKey, connectTimeout: 2 }, "true").catch((e) => e);
      expect(direct, "the gateway must not be reachable directly").toBeInstanceOf(ConnectError);

      const pristine = await gatewayState(lab);
      await withStack(
        { program: REPO, stack: "jump", secrets: { "multiwan:sshPrivateKey": locked.privateKey, "multiwan:sshPrivateKeyPassphrase": PASSPHRASE } },
        async (s) => {
          await s.setConfigObject("multiwan:site", site);
          const up = await s.up();
          expect(up.code).toBe(0);
          const deployed = await gatewayState(lab);
          expect(deployed.iptables).toContain("mangle -A PREROUTING -j MWAN-PRE");
          expect(gwSshd.log()).toContain(`Accepted publickey for ${user.name}`);

          const drift = stackCli(s, "drift");
          expect(drift.code, drift.out).toBe(0);
          expect(JSON.parse(drift.stdout)).toMatchObject([{ stack: "jump", gateway: "gw1", status: "in-sync", drift: [] }]);
          const status = stackCli(s, "status");
          const rows = JSON.parse(status.stdout);
          expect(rows, status.out).toMatchObject([{ gateway: "gw1", reachable: true, links: [{ name: "isp1" }, { name: "isp2" }] }]);

          const state = await s.exportState();
          expect(state).toContain("proxyJump");
          expect(state).not.toContain(PASSPHRASE);
          expect(state).not.toContain(locked.privateKey.split("\n")[1]);

          // Sudo rights taken away: refused before anything runs, the gateway as it was.
          await user.allowSudo(false);
          const gw = parseSite(site).gateways[0];
          const plan = planGateway(gw);
          const files = renderLabBundle(site);
          const push = { gateway: "gw1", target: sshConnection(gw.connection), privateKey: key.privateKey, installDir: plan.installDir, root: plan.root };
          const refused = await pushProvider.create({ ...push, rollbackAfter: 10, files, fingerprint: bundleFingerprint(files) }).catch((e) => e);
          expect(refused.message).toMatch(new RegExp(`^gw1: .*sudo needs a password for ${user.name} on 198\\.18\\.214\\.2: multiwan runs sh as root through sudo: allow it without a password \\(NOPASSWD\\)`));
          expect(await gatewayState(lab)).toEqual(deployed);
          const unprivileged = stackCli(s, "drift");
          expect(unprivileged.code).toBe(1);
          expect(unprivileged.stdout).toContain("sudo needs a password");

          await user.allowSudo(true);
          const down = await s.destroy();
          expect(down.code).toBe(0);
          expect(await gatewayState(lab)).toEqual(pristine);
        },
      );
    } finally {
      for (const stop of stops) await stop().catch(() => {});
      await user.remove();
      await bastionNs.remove();
      await lab.destroy();
      rmSync(scratch, { recursive: true, force: true });
    }
  }, 240_000);
});
