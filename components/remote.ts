// SSH to a gateway: one command per session, payload on stdin, every host key pinned; as root, or
// through `sudo -n` for another user. Used by push, drift and status alike; nothing secret is ever
// part of a command line.
import type { Connection } from "./config";
import { ConnectError, openSession, type SshAuth, type SshHop } from "./ssh-session";

export { ConnectError, type SshHop } from "./ssh-session";

/** How a gateway is reached, as the push's state keeps it (no secrets). */
export interface SshConnection extends SshHop {
  /** Run the command through `sudo -n` (a non-root `user`). */
  sudo?: boolean;
  /** Bastions, in order; the gateway is reached through the last. */
  proxyJump?: SshHop[];
  /** Authenticate with the ssh-agent at SSH_AUTH_SOCK. */
  agent?: boolean;
}

export interface SshTarget extends SshConnection, Omit<SshAuth, "agent"> {
  /** Seconds for the session to be open, every hop and retry included. */
  connectTimeout?: number;
}

export interface RemoteResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A connection's SSH settings; only what differs from the defaults, so older state compares equal. */
export function sshConnection(c: Connection): SshConnection {
  const pin = (h: { hostKey?: string; insecureSkipHostKeyCheck: boolean }) => (h.insecureSkipHostKeyCheck ? {} : { hostKey: h.hostKey });
  return {
    host: c.host,
    port: c.port,
    user: c.user,
    ...pin(c),
    ...(c.sudo ? { sudo: true } : {}),
    ...(c.proxyJump ? { proxyJump: c.proxyJump.map((b) => ({ host: b.host, port: b.port, user: b.user ?? c.user, ...pin(b) })) } : {}),
    ...(c.agent ? { agent: true } : {}),
  };
}

/** ssh2's words for a session channel or exec request the server turned down. */
const REFUSED_EXEC = /^Unable to exec|Channel open failure: (?!server closed)/;

/** Exit status and stderr prefix of the sudo check in sudoCommand: nothing else ran. */
const SUDO_REFUSED = { code: 97, prefix: "multiwan: sudo -n refused: " };

/** `'…'` for sh, whatever the text holds. */
export const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * `command` as root through `sudo -n`, stdin passed on. First a check that sudo runs without a
 * password, so a refusal is told apart from the command's own failure and nothing has run.
 */
export function sudoCommand(command: string): string {
  return [
    `if ! why=$(sudo -n sh -c : 2>&1 </dev/null); then printf '%s%s\\n' ${shellQuote(SUDO_REFUSED.prefix)} "$why" >&2; exit ${SUDO_REFUSED.code}; fi`,
    `exec sudo -n sh -c ${shellQuote(command)}`,
  ].join("\n");
}

function sudoRefusal(target: SshTarget, r: RemoteResult): ConnectError | undefined {
  if (r.code !== SUDO_REFUSED.code || !r.stderr.startsWith(SUDO_REFUSED.prefix)) return undefined;
  const said = r.stderr.slice(SUDO_REFUSED.prefix.length).trim();
  const who = `${target.user} on ${target.host}`;
  return new ConnectError(
    /password/i.test(said)
      ? `sudo needs a password for ${who}: multiwan runs sh as root through sudo: allow it without a password (NOPASSWD) (sudo said: ${said})`
      : `sudo -n failed for ${who}, nothing was run: ${said}`,
  );
}

export async function runRemote(target: SshTarget, command: string, stdin?: Buffer): Promise<RemoteResult> {
  const hops = [...(target.proxyJump ?? []), target];
  const session = await openSession(hops, target, target.connectTimeout);
  const at = `${target.host}:${target.port}`;
  try {
    const r = await new Promise<RemoteResult>((resolve, reject) => {
      session.onLost((err) => reject(new ConnectError(`${at}: ${err.message}`, true)));
      session.client.exec(target.sudo ? sudoCommand(command) : command, (err, stream) => {
        // Refused by the server: nothing ran. Otherwise the session died while asking: unknown.
        if (err) return reject(new ConnectError(`${at}: cannot run a command: ${err.message}`, !REFUSED_EXEC.test(err.message)));
        const out: Buffer[] = [];
        const errOut: Buffer[] = [];
        let exit: number | undefined;
        stream.on("data", (b: Buffer) => out.push(b));
        stream.stderr.on("data", (b: Buffer) => errOut.push(b));
        // A signal kills the command: 255. No exit status at all: the session ended while it ran.
        stream.on("exit", (code: number | null) => (exit = code ?? 255));
        stream.on("close", () =>
          exit === undefined
            ? reject(new ConnectError(`${at}: the session ended before the command's exit status arrived`, true))
            : resolve({ code: exit, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(errOut).toString() }),
        );
        stream.end(stdin);
      });
    });
    const refused = target.sudo ? sudoRefusal(target, r) : undefined;
    if (refused) throw refused;
    return r;
  } finally {
    session.close();
  }
}
