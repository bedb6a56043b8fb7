// A real OpenSSH sshd serving one network namespace, as a gateway's would: commands arriving
// through it run inside that namespace. Everything it uses (config, host keys, authorized_keys,
// pid file) lives in a scratch directory; stop() kills only the process started here, by PID.
import { execFile, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Sshd {
  host: string;
  port: number;
  user: string;
  /** The server's first public host key, "ssh-ed25519 AAAA…" (authorized_keys form, no comment). */
  hostKey: string;
  /** Every host key the server holds, by type (as `hostKeyTypes` named them). */
  hostKeys: Partial<Record<HostKeyType, string>>;
  /** OpenSSH-format ed25519 private key that the server accepts for `user`. */
  privateKey: string;
  /** Scratch directory (also holds client_ed25519 for the ssh command line client). */
  dir: string;
  pid: number;
  /** The sshd log so far (-e sends it to stderr, which goes to sshd.log in `dir`). */
  log(): string;
  stop(): Promise<void>;
}

export type HostKeyType = "ed25519" | "rsa" | "ecdsa";

async function keygen(file: string, comment: string, type: HostKeyType = "ed25519"): Promise<void> {
  const size = type === "rsa" ? ["-b", "2048"] : [];
  await run("ssh-keygen", ["-q", "-t", type, ...size, "-N", "", "-C", comment, "-f", file], { timeout: 10_000 });
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
  /** The account that logs in; another than root must exist and be able to enter `parent`. */
  user?: string;
  startTimeoutMs?: number;
  /** A client key to authorize (e.g. one key for every gateway of a stack); default: a new one. */
  client?: ClientKey;
  /** More authorized_keys lines (e.g. a passphrase-protected key). */
  authorize?: string[];
  /** Host keys, in this order; default ed25519 only. */
  hostKeyTypes?: HostKeyType[];
  /** Where the scratch directory goes; default the system's temp directory. */
  parent?: string;
  /** Outlive this process (the built-in lab); whoever deletes the namespace ends it. */
  detach?: boolean;
}): Promise<Sshd> {
  const { netns, address, port = 22, user = "root", startTimeoutMs = 10_000, hostKeyTypes = ["ed25519"] } = opts;
  if (!/^mw[tl]-/.test(netns)) throw new Error(`refusing namespace ${netns}: not one of ours`);
  const dir = await mkdtemp(join(opts.parent ?? tmpdir(), "mwt-eng-sshd-"));
  try {
    for (const type of hostKeyTypes) await keygen(join(dir, `host_${type}`), "", type);
    const client = opts.client ?? (await clientKey(dir));
    await writeFile(join(dir, "client_ed25519"), client.privateKey, { mode: 0o600 });
    await writeFile(join(dir, "client_ed25519.pub"), client.publicKey);
    const authorized = [client.publicKey, ...(opts.authorize ?? [])].map((l) => `${l.trim()}\n`).join("");
    // sshd reads authorized_keys as the user: another than root needs to get at it.
    await writeFile(join(dir, "authorized_keys"), authorized, { mode: user === "root" ? 0o600 : 0o644 });
    if (user !== "root") await chmod(dir, 0o711);
    // Privilege separation directory; shared with the host's sshd, so only ever created.
    await mkdir("/run/sshd", { recursive: true, mode: 0o755 });
    const config = [
      `ListenAddress ${address}:${port}`,
      ...hostKeyTypes.map((type) => `HostKey ${join(dir, `host_${type}`)}`),
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

    // `ip netns exec` execs sshd in place, so the child's PID is sshd's. Its log goes to a file, so
    // that it can outlive this process.
    const logFile = join(dir, "sshd.log");
    const logFd = openSync(logFile, "a", 0o600);
    const child = spawn("ip", ["netns", "exec", netns, "/usr/sbin/sshd", "-D", "-e", "-f", join(dir, "sshd_config")], {
      stdio: ["ignore", "ignore", logFd],
      detached: opts.detach,
    });
    closeSync(logFd);
    if (opts.detach) child.unref();
    const log = () => {
      try {
        return readFileSync(logFile, "utf8");
      } catch {
        return ""; // stopped: the directory is gone
      }
    };
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    await new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + startTimeoutMs;
      const poll = setInterval(() => {
        if (log().includes("Server listening on")) (clearInterval(poll), resolve());
        else if (Date.now() > deadline) (clearInterval(poll), reject(new Error(`sshd did not start in ${startTimeoutMs} ms:\n${log()}`)));
      }, 20);
      child.once("error", (e) => (clearInterval(poll), reject(e)));
      child.once("exit", (code) => (clearInterval(poll), reject(new Error(`sshd exited (${code}):\n${log()}`))));
    }).catch(async (e) => {
      if (child.exitCode === null && child.pid) process.kill(child.pid, "SIGKILL");
      throw e;
    });

    const hostKeys: Partial<Record<HostKeyType, string>> = {};
    for (const type of hostKeyTypes) {
      const [name, blob] = (await readFile(join(dir, `host_${type}.pub`), "utf8")).trim().split(/\s+/);
      hostKeys[type] = `${name} ${blob}`;
    }
    const pid = child.pid!;
    return {
      host: address,
      port,
      user,
      hostKey: hostKeys[hostKeyTypes[0]]!,
      hostKeys,
      privateKey: client.privateKey,
      dir,
      pid,
      log,
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
