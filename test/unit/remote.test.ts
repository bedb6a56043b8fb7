// The SSH client's rules without root: host-key lines as ssh-keyscan prints them, the connection
// schema's new fields, the sudo wrapper (run by a local sh with a stand-in sudo), keys that cannot
// be used, and when a session is retried, against an in-process ssh2 server.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server, utils } from "ssh2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, parseConnection } from "../../components/config";
import { hostKeyAlgorithms, parseHostKey } from "../../components/host-key";
import { ConnectError, runRemote, sshConnection, sudoCommand } from "../../components/remote";
import { validSite } from "./fixtures";

const ED25519 = validSite().gateways[0].connection.hostKey as string;
const BLOB = ED25519.split(" ")[1];
const RSA_BLOB = utils.generateKeyPairSync("rsa", { bits: 1024 }).public.split(" ")[1];

const problemsOf = (input: unknown) => {
  try {
    parseConnection(input);
    return [];
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.problems;
  }
};

describe("host key lines", () => {
  it("takes the line exactly as ssh-keyscan prints it, or the bare key, with or without a comment", () => {
    for (const line of [
      `192.0.2.50 ssh-ed25519 ${BLOB}`,
      `[192.0.2.50]:2222 ssh-ed25519 ${BLOB}`,
      `|1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= ssh-ed25519 ${BLOB}`,
      `ssh-ed25519 ${BLOB}`,
      `ssh-ed25519 ${BLOB} root@gw1 (spare)`,
    ]) {
      expect(problemsOf({ host: "192.0.2.50", hostKey: line }), line).toEqual([]);
      expect(parseHostKey(line), line).toEqual({ type: "ssh-ed25519", blob: Buffer.from(BLOB, "base64") });
    }
  });

  it("refuses key data of another type than the line says, and a huge line at once", () => {
    expect(problemsOf({ host: "gw", hostKey: `ssh-ed25519 ${RSA_BLOB}` })).toEqual([
      { path: "config.connection.hostKey", message: "the key data is not a ssh-ed25519 key (it says ssh-rsa)" },
    ]);
    const t0 = performance.now();
    const huge = problemsOf({ host: "gw", hostKey: `${"a".repeat(100_000)} ssh-ed25519 ${"A".repeat(100_000)}!` });
    expect(performance.now() - t0).toBeLessThan(200);
    expect(huge.map((p) => p.message).join()).toMatch(/at most 16384 characters/);
  });

  it("asks for the pinned key's algorithm, and for an RSA key its SHA-2 signatures first", () => {
    expect(hostKeyAlgorithms("ssh-ed25519")).toEqual(["ssh-ed25519"]);
    expect(hostKeyAlgorithms("ecdsa-sha2-nistp384")).toEqual(["ecdsa-sha2-nistp384"]);
    expect(hostKeyAlgorithms("ssh-rsa")).toEqual(["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]);
  });
});

describe("connection: sudo, bastions, agent", () => {
  it("pins every bastion's host key too, naming the bastion", () => {
    expect(problemsOf({ host: "gw", hostKey: ED25519, proxyJump: [{ host: "bastion", hostKey: ED25519 }, { host: "b2", prot: 22 }] })).toEqual([
      { path: "config.connection.proxyJump[1].prot", message: "unknown key" },
      { path: "config.connection.proxyJump[1].hostKey", message: expect.stringMatching(/is required to pin/) },
    ]);
  });

  it("keeps an old connection's target as it was; a bastion's user defaults to the gateway's", () => {
    expect(sshConnection(parseConnection({ host: "192.0.2.50", hostKey: ED25519 }))).toEqual({ host: "192.0.2.50", port: 22, user: "root", hostKey: ED25519 });
    const c = parseConnection({
      host: "10.0.0.1",
      user: "netops",
      sudo: true,
      agent: true,
      hostKey: ED25519,
      proxyJump: [{ host: "bastion.example.org", port: 2222, hostKey: ED25519 }, { host: "inner", user: "jump", insecureSkipHostKeyCheck: true }],
    });
    expect(sshConnection(c)).toEqual({
      host: "10.0.0.1",
      port: 22,
      user: "netops",
      hostKey: ED25519,
      sudo: true,
      agent: true,
      proxyJump: [{ host: "bastion.example.org", port: 2222, user: "netops", hostKey: ED25519 }, { host: "inner", port: 22, user: "jump" }],
    });
  });
});

describe("sudoCommand", () => {
  const dir = mkdtempSync(join(tmpdir(), "mwt-unit-sudo-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  /** `sh -c WRAPPED` with a stand-in `sudo` on PATH: one that runs its command, or one that wants a password. */
  const wrapped = (script: string, sudo: string, input = "") => {
    writeFileSync(join(dir, "sudo"), `#!/bin/sh\n${sudo}\n`, { mode: 0o755 });
    return spawnSync("sh", ["-c", sudoCommand(script)], { input, encoding: "utf8", env: { PATH: `${dir}:/usr/bin:/bin` } });
  };

  it("runs the command unchanged (quotes, variables, several lines) with stdin passed on", () => {
    const script = `set -eu\nx='it'"'"'s "$HOME"'\nprintf '%s|' "$x" "$(cat)"\ntrap 'echo "bye $x"' EXIT`;
    const direct = spawnSync("sh", ["-c", script], { input: "payload\n", encoding: "utf8" });
    const viaSudo = wrapped(script, '[ "$1" = -n ] && shift; exec "$@"', "payload\n");
    expect(viaSudo.stdout).toBe(direct.stdout);
    expect(viaSudo.stdout).toBe(`it's "$HOME"|payload|bye it's "$HOME"\n`);
    expect(viaSudo.status).toBe(0);
  });

  it("says sudo refused, and runs nothing, when sudo wants a password", () => {
    const marker = join(dir, "ran");
    const r = wrapped(`touch ${marker}`, 'echo "sudo: a password is required" >&2; exit 1');
    expect(r.status).toBe(97);
    expect(r.stderr).toBe("multiwan: sudo -n refused: sudo: a password is required\n");
    expect(existsSync(marker)).toBe(false);
  });
});

/**
 * An ssh2 server on 127.0.0.1 behind a TCP front that drops the first `drop` connections: it
 * accepts any public key for user "root", runs `echo`-like commands, and cuts the connection on
 * `die` after the command started.
 */
async function withServer<T>(drop: number, fn: (port: number, seen: { connections: number; commands: string[] }) => Promise<T>): Promise<T> {
  const seen = { connections: 0, commands: [] as string[] };
  const ssh = new Server({ hostKeys: [utils.generateKeyPairSync("ed25519").private] }, (client) => {
    client
      .on("authentication", (ctx) => (ctx.username === "root" && ctx.method === "publickey" ? ctx.accept() : ctx.reject(["publickey"])))
      .on("ready", () =>
        client.on("session", (accept) =>
          accept().once("exec", (acceptExec, _reject, info) => {
            seen.commands.push(info.command);
            const stream = acceptExec();
            if (info.command === "die") (client as unknown as { _sock: Socket })._sock.destroy();
            else {
              stream.write(`ran ${info.command}\n`);
              stream.exit(0);
              stream.end();
            }
          }),
        ),
      )
      .on("error", () => {});
  });
  const front: NetServer = createServer((sock) => {
    if (++seen.connections <= drop) sock.destroy();
    else ssh.injectSocket(sock);
  });
  const port = await new Promise<number>((r) => front.listen(0, "127.0.0.1", () => r((front.address() as { port: number }).port)));
  try {
    return await fn(port, seen);
  } finally {
    front.close();
  }
}

describe("runRemote: keys and retries", () => {
  const key = utils.generateKeyPairSync("ed25519");
  const locked = utils.generateKeyPairSync("ed25519", { passphrase: "correct horse", cipher: "aes256-ctr", rounds: 4 } as never);
  const at = (port: number) => ({ host: "127.0.0.1", port, user: "root" });
  let savedSock: string | undefined;
  beforeAll(() => {
    savedSock = process.env.SSH_AUTH_SOCK;
    delete process.env.SSH_AUTH_SOCK;
  });
  afterAll(() => {
    if (savedSock !== undefined) process.env.SSH_AUTH_SOCK = savedSock;
  });

  it("says what is wrong with the key, and connects nowhere, when it cannot be used", async () => {
    await withServer(0, async (port, seen) => {
      const cases: [object, RegExp][] = [
        [{ privateKey: locked.private }, /the SSH private key is passphrase-protected and no passphrase was given \(the secret multiwan:sshPrivateKeyPassphrase; for the CLI --passphrase-file/],
        [{ privateKey: locked.private, passphrase: "wrong" }, /the passphrase does not decrypt the SSH private key/],
        [{ agent: true }, /connection.agent is true but SSH_AUTH_SOCK is not set/],
        [{}, /no SSH private key \(the secret multiwan:sshPrivateKey, or the CLI's --key\)/],
      ];
      for (const [auth, message] of cases) {
        const e = await runRemote({ ...at(port), ...auth }, "true").catch((e) => e);
        expect(e).toBeInstanceOf(ConnectError);
        expect(e.message).toMatch(message);
        expect(e.message).not.toContain("correct horse");
        expect(e.message).not.toContain("wrong");
      }
      expect(seen.connections).toBe(0);
      // With its passphrase, the protected key works.
      expect((await runRemote({ ...at(port), privateKey: locked.private, passphrase: "correct horse" }, "x")).stdout).toBe("ran x\n");
    });
  }, 20_000); // decrypting the key (bcrypt KDF) three times is slow on a loaded 2-core machine

  it("retries a session that drops before it is open, with backoff, and then runs the command once", async () => {
    await withServer(2, async (port, seen) => {
      const t0 = Date.now();
      const r = await runRemote({ ...at(port), privateKey: key.private }, "hello");
      expect(r).toEqual({ code: 0, stdout: "ran hello\n", stderr: "" });
      expect(seen.connections).toBe(3);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(4000); // waited 1 s, then 3 s
      expect(seen.commands).toEqual(["hello"]);
    });
  }, 20_000);

  it("gives up after 3 attempts, and never retries a refused login or a command that started", async () => {
    await withServer(9, async (port, seen) => {
      const e = await runRemote({ ...at(port), privateKey: key.private }, "x").catch((e) => e);
      expect(e).toBeInstanceOf(ConnectError);
      expect(e.message).toMatch(/^127\.0\.0\.1:\d+: .* \(3 attempts in [45]\.\d s\)$/);
      expect(seen.connections).toBe(3);
    });
    await withServer(0, async (port, seen) => {
      const refused = await runRemote({ ...at(port), user: "nobody", privateKey: key.private }, "x").catch((e) => e);
      expect(refused.message).toMatch(/All configured authentication methods failed$/);
      const died = await runRemote({ ...at(port), privateKey: key.private }, "die").catch((e) => e);
      expect(died).toBeInstanceOf(ConnectError);
      expect(died.afterReady).toBe(true);
      expect(seen).toEqual({ connections: 2, commands: ["die"] });
    });
  }, 20_000);
});
