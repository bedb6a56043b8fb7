// The sshd helper on its own, checked with the OpenSSH client: commands run inside the namespace,
// the host key it reports is the one the server presents, only key authentication is accepted.
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect, it } from "vitest";
import { createVethNamespace } from "../../lab/netns";
import { startSshd } from "../../lab/sshd";
import { describeAsRoot } from "../helpers/root";

const run = promisify(execFile);

describeAsRoot("sshd helper", () => {
  it("serves a network namespace with key authentication and a known host key", async () => {
    const ns = await createVethNamespace({ name: `mwt-eng-sshd-${process.pid}` });
    const sshd = await startSshd({ netns: ns.name, address: ns.nsAddress }).catch(async (e) => {
      await ns.remove();
      throw e;
    });
    try {
      const known = join(sshd.dir, "known_hosts");
      const ssh = (extra: string[], cmd: string) =>
        run("ssh", ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", `UserKnownHostsFile=${known}`,
          "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", "-p", String(sshd.port), ...extra,
          `${sshd.user}@${sshd.host}`, cmd], { timeout: 20_000 });
      const key = ["-i", join(sshd.dir, "client_ed25519"), "-o", "IdentitiesOnly=yes"];

      await writeFile(known, `${sshd.host} ${sshd.hostKey}\n`);
      const { stdout } = await ssh(key, "ip -o addr show eth0");
      expect(stdout).toContain(`inet ${ns.nsAddress}/30`);
      expect(sshd.privateKey).toMatch(/^-----BEGIN OPENSSH PRIVATE KEY-----/);

      // Another ed25519 key in known_hosts: the client must refuse the server.
      const other = (await run("cat", [join(sshd.dir, "client_ed25519.pub")])).stdout.split(" ").slice(0, 2).join(" ");
      await writeFile(known, `${sshd.host} ${other}\n`);
      await expect(ssh(key, "true")).rejects.toThrow(/Host key verification failed/);

      // No key: password and keyboard-interactive are off.
      await writeFile(known, `${sshd.host} ${sshd.hostKey}\n`);
      await expect(ssh(["-o", "PubkeyAuthentication=no"], "true")).rejects.toThrow(/Permission denied/);
    } finally {
      await sshd.stop();
      await ns.remove();
    }
    expect((await run("ip", ["netns", "list"])).stdout).not.toContain(ns.name);
  }, 60_000);
});
