// The real engine with @pulumi/command's remote.Command over SSH to an sshd inside a network
// namespace (the engine and provider run in the root namespace and reach it through a veth pair).
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { readFile } from "node:fs/promises";
import { toolchain, TOOLS_BIN, withStack } from "../helpers/engine";
import { createVethNamespace } from "../helpers/netns";
import { startSshd } from "../../lab/sshd";

const PROGRAM = join(__dirname, "fixtures/remote-command");

// This machine's Go module proxy refuses github.com/pulumi/pulumi-command/provider (403), so the
// plugin cannot be built here (see scripts/pulumi-toolchain.sh); the test runs wherever it exists.
const commandProvider = existsSync(join(TOOLS_BIN, "pulumi-resource-command"));

describe.skipIf(!commandProvider)("engine: remote.Command over SSH", () => {
  it("runs in the namespace, keeps the key out of the state, refuses a wrong host key", async () => {
    toolchain(); // fail before touching the network when the engine is missing
    const ns = await createVethNamespace({ name: `mwt-eng-rc-${process.pid}` });
    try {
      const sshd = await startSshd({ netns: ns.name, address: ns.nsAddress });
      try {
        const config = { host: sshd.host, port: String(sshd.port), user: sshd.user, hostKey: sshd.hostKey };
        const secrets = { privateKey: sshd.privateKey };

        await withStack({ program: PROGRAM, stack: "good", config, secrets }, async (s) => {
          await s.up();
          const { addrs } = await s.outputs();
          expect(addrs).toContain(`inet ${ns.nsAddress}/30`);
          expect(addrs).not.toContain(ns.hostAddress); // the root namespace's end is not there

          const state = await s.exportState();
          // Any line of the key's base64 body, and the whole key, must be absent.
          const body = sshd.privateKey.split("\n").filter((l) => l && !l.startsWith("-----"));
          for (const line of body) expect(state).not.toContain(line);
          expect(state).not.toContain(JSON.stringify(sshd.privateKey).slice(1, -1));
          expect(state).toContain("4dabf18193072939515e22adb298388d"); // Pulumi's secret marker
        });
        // It went through this sshd, from the root namespace's end of the veth pair.
        expect(sshd.log()).toContain(`Accepted publickey for root from ${ns.hostAddress}`);

        // The server presents its host key; pin another ed25519 key (the client's own).
        const other = (await readFile(join(sshd.dir, "client_ed25519.pub"), "utf8")).split(" ").slice(0, 2).join(" ");
        await withStack(
          { program: PROGRAM, stack: "wrong-host-key", config: { ...config, hostKey: other, dialErrorLimit: "1" }, secrets },
          async (s) => {
            const r = await s.up({ allowFailure: true });
            expect(r.code).not.toBe(0);
            expect(`${r.stdout}\n${r.stderr}`).toMatch(/host key/i);
            expect(`${r.stdout}\n${r.stderr}`).not.toContain("inet ");
          },
        );
      } finally {
        await sshd.stop();
      }
    } finally {
      await ns.remove();
    }
  }, 600_000);
});
