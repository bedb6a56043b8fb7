// The push's SSH client (ssh2) against a real sshd in a namespace: commands run there, stdin
// arrives, and a host key other than the pinned one is refused before anything runs.
import { expect, it } from "vitest";
import { ConnectError, runRemote } from "../../components/remote";
import { createVethNamespace } from "../../lab/netns";
import { startSshd } from "../../lab/sshd";
import { describeAsRoot } from "../helpers/root";

describeAsRoot("runRemote", () => {
  it("runs in the gateway's namespace with the pinned host key, and refuses any other", async () => {
    const ns = await createVethNamespace({ name: `mwt-eng-remote-${process.pid}`, hostCidr: "198.18.200.5/30", nsCidr: "198.18.200.6/30" });
    try {
      const sshd = await startSshd({ netns: ns.name, address: ns.nsAddress });
      try {
        const target = { host: sshd.host, port: sshd.port, user: sshd.user, hostKey: sshd.hostKey, privateKey: sshd.privateKey };
        const r = await runRemote(target, "ip -o -4 addr show eth0; cat", Buffer.from("from stdin\n"));
        expect(r.code).toBe(0);
        expect(r.stdout).toContain(`inet ${ns.nsAddress}/30`);
        expect(r.stdout).toContain("from stdin\n");
        expect((await runRemote(target, "exit 3")).code).toBe(3);

        const otherKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIABrfGt9wZ2pFlXNancn1sg8tHkT224ufhuW9vHs4qLQ";
        const refused = runRemote({ ...target, hostKey: otherKey }, "touch /tmp/mwt-should-not-exist");
        await expect(refused).rejects.toThrow(ConnectError);
        await expect(refused).rejects.toThrow(/host key does not match the pinned connection.hostKey/);
        await expect(refused.catch((e: ConnectError) => e.afterReady)).resolves.toBe(false);
      } finally {
        await sshd.stop();
      }
    } finally {
      await ns.remove();
    }
  }, 60_000);
});
