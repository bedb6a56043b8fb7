// A real OpenSSH sshd serving one network namespace, as a gateway's would: commands arriving
// through it run inside that namespace. Everything it uses (config, host key, authorized_keys,
// pid file) lives in a scratch directory; stop() kills only the process started here, by PID.
import { execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Sshd {
  host: string;
  port: number;
  user: string;
  /** The server's public host key, "ssh-ed25519 AAAA…" (authorized_keys form, no comment). */
  hostKey: string;
  /** OpenSSH-format ed25519 private key that the server accepts for `user`. */
  privateKey: string;
  /** Scratch directory (also holds client_ed25519 for the ssh command line client). */
  dir: string;
  pid: number;
  /** Captured sshd log (-e sends it to stderr). */
  log(): string;
  stop(): Promise<void>;
}

async function keygen(file: string, comment: string): Promise<void> {
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file], { timeout: 10_000 });
}

export interface ClientKey {
  privateKey: string;
  /** authorized_keys line */
  publicKey: string;
}

/** A new ed25519 client key pair, generated in `dir` (scratch). */
export async function clientKey(dir: string): Promise<ClientKey> {
  await keygen(join(dir, "client_new"), "mwt-client");
  const key = { privateKey: await readFile(join(dir, "client_new"), "utf8"), publicKey: await readFile(join(dir, "client_new.pub"), "utf8") };
  await rm(join(dir, "client_new"), { force: true });
  await rm(join(dir, "client_new.pub"), { force: true });
  return key;
}

export async function startSshd(opts: {
  netns: string;
  address: string;
  port?: number;
  user?: string;
  startTimeoutMs?: number;
  /** A client key to authorize (e.g. one key for every gateway of a stack); default: a new one. */
  client?: ClientKey;
}): Promise<Sshd> {
  const { netns, address, port = 22, user = "root", startTimeoutMs = 10_000 } = opts;
  if (!/^mw[tl]-/.test(netns)) throw new Error(`refusing namespace ${netns}: not one of ours`);
  const dir = await mkdtemp(join(tmpdir(), "mwt-eng-sshd-"));
  try {
    await keygen(join(dir, "host_ed25519"), "");
    const client = opts.client ?? (await clientKey(dir));
    await writeFile(join(dir, "client_ed25519"), client.privateKey, { mode: 0o600 });
    await writeFile(join(dir, "client_ed25519.pub"), client.publicKey);
    const clientPub = client.publicKey;
    await writeFile(join(dir, "authorized_keys"), clientPub, { mode: 0o600 });
    // Privilege separation directory; shared with the host's sshd, so only ever created.
    await mkdir("/run/sshd", { recursive: true, mode: 0o755 });
    const config = [
      `ListenAddress ${address}:${port}`,
      `HostKey ${join(dir, "host_ed25519")}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "PermitRootLogin prohibit-password",
      "PubkeyAuthentication yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      // The scratch dir sits under the world-writable /tmp, which StrictModes rejects.
      "StrictModes no",
      // CopyToRemote uses SFTP.
      "Subsystem sftp internal-sftp",
      "LogLevel VERBOSE",
      "",
    ].join("\n");
    await writeFile(join(dir, "sshd_config"), config, { mode: 0o600 });

    // `ip netns exec` execs sshd in place, so the child's PID is sshd's.
    const child = spawn("ip", ["netns", "exec", netns, "/usr/sbin/sshd", "-D", "-e", "-f", join(dir, "sshd_config")], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "";
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`sshd did not start in ${startTimeoutMs} ms:\n${log}`)), startTimeoutMs);
      child.stderr!.on("data", (b: Buffer) => {
        log += b.toString();
        if (log.includes("Server listening on")) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("error", (e) => (clearTimeout(timer), reject(e)));
      child.once("exit", (code) => (clearTimeout(timer), reject(new Error(`sshd exited (${code}):\n${log}`))));
    }).catch(async (e) => {
      if (child.exitCode === null && child.pid) process.kill(child.pid, "SIGKILL");
      throw e;
    });

    const [type, blob] = (await readFile(join(dir, "host_ed25519.pub"), "utf8")).trim().split(/\s+/);
    const pid = child.pid!;
    return {
      host: address,
      port,
      user,
      hostKey: `${type} ${blob}`,
      privateKey: client.privateKey,
      dir,
      pid,
      log: () => log,
      async stop() {
        if (child.exitCode === null && child.signalCode === null) {
          process.kill(pid, "SIGTERM");
          const killer = setTimeout(() => child.exitCode === null && process.kill(pid, "SIGKILL"), 5_000);
          await exited;
          clearTimeout(killer);
        }
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}
