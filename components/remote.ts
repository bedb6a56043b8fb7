// SSH to a gateway: one command per connection, payload on stdin, the host key pinned.
// Used by the push provider; nothing secret is ever part of a command line.
import { Client } from "ssh2";

export interface SshTarget {
  host: string;
  port: number;
  user: string;
  /** OpenSSH public host key line, e.g. `ssh-ed25519 AAAA…`; undefined only when explicitly allowed. */
  hostKey?: string;
  privateKey: string;
  /** Seconds to wait for the connection and the handshake. */
  connectTimeout?: number;
}

export interface RemoteResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The session failed: before it was open (unreachable, refused, wrong host key: nothing ran), or after. */
export class ConnectError extends Error {
  readonly afterReady: boolean;
  constructor(message: string, afterReady = false) {
    super(message);
    // Set again: inside a dynamic provider, Pulumi's closure serializer turns `super(message)` into
    // a call that leaves `message` unset (a test saw "cannot connect …: undefined").
    this.message = message;
    this.name = "ConnectError";
    this.afterReady = afterReady;
  }
}

/** The key blob of an OpenSSH public key line, compared byte for byte with what the server offers. */
function keyBlob(line: string): Buffer {
  return Buffer.from(line.trim().split(/\s+/)[1] ?? "", "base64");
}

export function runRemote(target: SshTarget, command: string, stdin?: Buffer): Promise<RemoteResult> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let hostKeyMismatch = false;
    let ready = false;
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      client.end();
      fn();
    };
    client
      .on("ready", () => {
        ready = true;
        client.exec(command, (err, stream) => {
          if (err) return finish(() => reject(new ConnectError(`${target.host}: cannot run a command: ${err.message}`)));
          const out: Buffer[] = [];
          const errOut: Buffer[] = [];
          stream.on("data", (b: Buffer) => out.push(b));
          stream.stderr.on("data", (b: Buffer) => errOut.push(b));
          stream.on("close", (code: number | null) =>
            finish(() => resolve({ code: code ?? 255, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(errOut).toString() })),
          );
          stream.end(stdin);
        });
      })
      .on("error", (err) => {
        const why = hostKeyMismatch
          ? `host key does not match the pinned connection.hostKey (refusing to connect)`
          : err.message;
        finish(() => reject(new ConnectError(`${target.host}:${target.port}: ${why}`, ready)));
      })
      .connect({
        host: target.host,
        port: target.port,
        username: target.user,
        privateKey: target.privateKey,
        readyTimeout: (target.connectTimeout ?? 15) * 1000,
        // A session whose packets stop flowing (new rules that cut the path) fails instead of hanging.
        keepaliveInterval: 3000,
        keepaliveCountMax: 5,
        hostVerifier: (key: Buffer) => {
          if (target.hostKey === undefined) return true;
          hostKeyMismatch = !key.equals(keyBlob(target.hostKey));
          return !hostKeyMismatch;
        },
      });
  });
}
