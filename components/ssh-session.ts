// An authenticated SSH session to a gateway, possibly through bastions (ssh2: each hop's Client
// runs over a channel forwarded by the previous one), each hop's host key pinned. Opening it is
// retried with backoff while the failure is one of reaching the host (refused, unreachable, reset,
// timed out), never for a host key, authentication or key problem, and never once it is open.
import { Client, type ConnectConfig, type ServerHostKeyAlgorithm } from "ssh2";
import type { Duplex } from "node:stream";
import { hostKeyAlgorithms, parseHostKey } from "./host-key";

export interface SshHop {
  host: string;
  port: number;
  user: string;
  /** An OpenSSH public host key line (as `ssh-keyscan` prints it); undefined only when explicitly allowed. */
  hostKey?: string;
}

export interface SshAuth {
  /** OpenSSH/PEM private key text. */
  privateKey?: string;
  passphrase?: string;
  /** Use the ssh-agent at SSH_AUTH_SOCK. */
  agent?: boolean;
}

/** The session failed: before it was open (unreachable, refused, wrong host key: nothing ran), or after. */
export class ConnectError extends Error {
  readonly afterReady: boolean;
  /** A failure to reach a host, worth another try before the session is open. */
  readonly transient: boolean;
  constructor(message: string, afterReady = false, transient = false) {
    super(message);
    // Set again: inside a dynamic provider, Pulumi's closure serializer turns `super(message)` into
    // a call that leaves `message` unset (a test saw "cannot connect …: undefined").
    this.message = message;
    this.name = "ConnectError";
    this.afterReady = afterReady;
    this.transient = transient;
  }
}

/** Pause before the 2nd and 3rd attempt; an attempt only starts if the connect budget allows it. */
export const RETRY_DELAYS_MS = [1000, 3000];
const KEY_HINT = "the secret multiwan:sshPrivateKeyPassphrase; for the CLI --passphrase-file FILE or MULTIWAN_SSH_PASSPHRASE";

export interface Session {
  client: Client;
  /** Called once if any hop fails after the session is open. */
  onLost(handler: (e: Error) => void): void;
  close(): void;
}

type Credentials = Pick<ConnectConfig, "privateKey" | "passphrase" | "agent">;

/** What ssh2 authenticates with (it parses the key itself, see keyProblem). */
function credentials(host: string, auth: SshAuth): Credentials {
  const out: Credentials = {};
  if (auth.agent) {
    const sock = process.env.SSH_AUTH_SOCK;
    if (!sock) throw new ConnectError(`${host}: connection.agent is true but SSH_AUTH_SOCK is not set (start ssh-agent and ssh-add the key)`);
    out.agent = sock;
  }
  if (auth.privateKey) {
    out.privateKey = auth.privateKey;
    out.passphrase = auth.passphrase;
  }
  if (!out.agent && !out.privateKey) {
    throw new ConnectError(`${host}: no SSH private key (the secret multiwan:sshPrivateKey, or the CLI's --key) and connection.agent is not true`);
  }
  return out;
}

/** ssh2's connect() throws, before opening any socket, when the key cannot be used: say why. */
function keyProblem(message: string): string {
  if (/no passphrase given/.test(message)) return `the SSH private key is passphrase-protected and no passphrase was given (${KEY_HINT})`;
  if (/bad passphrase|integrity check failed/i.test(message)) return `the passphrase does not decrypt the SSH private key (${KEY_HINT})`;
  return message;
}

/** Where a hop's failure is reported, and which config field pins its key. */
function hopLabel(hops: SshHop[], i: number): { at: string; pin: string } {
  const h = hops[i];
  return i === hops.length - 1
    ? { at: `${h.host}:${h.port}`, pin: "connection.hostKey" }
    : { at: `${h.host}:${h.port} (bastion ${i + 1} of ${hops.length - 1})`, pin: `connection.proxyJump[${i}].hostKey` };
}

/** ssh2 error levels that mean the host was not reached (yet); the rest (auth, handshake, dns) will not change. */
const isTransient = (err: Error & { level?: string }) =>
  err.level === "client-socket" || err.level === "client-timeout" || /before handshake|connection closed/i.test(err.message);

function connectHop(
  hop: SshHop,
  label: { at: string; pin: string },
  creds: Credentials,
  deadline: number,
  onLost: (e: Error) => void,
  sock?: Duplex,
): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    const pinned = hop.hostKey === undefined ? undefined : parseHostKey(hop.hostKey);
    let ready = false;
    let mismatch = false;
    const lost = (err: Error & { level?: string }) => {
      if (ready) return onLost(err);
      client.end();
      const why = mismatch
        ? `host key does not match the pinned ${label.pin} (refusing to connect)`
        : pinned && /no matching host key format/.test(err.message)
          ? `offers no ${pinned.type} host key, the type of the pinned ${label.pin}`
          : err.message;
      reject(new ConnectError(`${label.at}: ${why}`, false, !mismatch && isTransient(err)));
    };
    client
      .on("ready", () => ((ready = true), resolve(client)))
      .on("error", lost)
      .on("close", () => lost(new Error("connection closed")));
    const config: ConnectConfig = {
      host: hop.host,
      port: hop.port,
      username: hop.user,
      sock,
      ...creds,
      readyTimeout: Math.max(1000, deadline - Date.now()),
      // A session whose packets stop flowing (new rules that cut the path) fails instead of hanging.
      keepaliveInterval: 3000,
      keepaliveCountMax: 5,
      ...(pinned ? { algorithms: { serverHostKey: hostKeyAlgorithms(pinned.type) as ServerHostKeyAlgorithm[] } } : {}),
      hostVerifier: (key: Buffer) => {
        if (!pinned) return true;
        mismatch = !key.equals(pinned.blob);
        return !mismatch;
      },
    };
    try {
      client.connect(config);
    } catch (e) {
      reject(new ConnectError(`${hop.host}: ${keyProblem((e as Error).message)}`));
    }
  });
}

/** A channel from `via` to the next hop, within the deadline. */
function forward(via: Client, at: string, next: SshHop, deadline: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const fail = (why: string) => reject(new ConnectError(`${at}: cannot reach ${next.host}:${next.port} from this bastion: ${why}`, false, true));
    const timer = setTimeout(() => fail("timed out"), Math.max(1000, deadline - Date.now()));
    via.forwardOut("127.0.0.1", 0, next.host, next.port, (err, stream) => {
      clearTimeout(timer);
      if (err) fail(err.message);
      else resolve(stream);
    });
  });
}

/** One attempt: every hop in order, the gateway last. */
async function openOnce(hops: SshHop[], creds: Credentials, deadline: number): Promise<Session> {
  const clients: Client[] = [];
  let handler: ((e: Error) => void) | undefined;
  let closing = false;
  const onLost = (e: Error) => {
    if (closing || !handler) return;
    const h = handler;
    handler = undefined;
    h(e);
  };
  const close = () => {
    closing = true;
    for (const c of clients.reverse()) c.end();
  };
  try {
    let sock: Duplex | undefined;
    for (const [i, hop] of hops.entries()) {
      const label = hopLabel(hops, i);
      clients.push(await connectHop(hop, label, creds, deadline, onLost, sock));
      if (i + 1 < hops.length) sock = await forward(clients[i], label.at, hops[i + 1], deadline);
    }
  } catch (e) {
    close();
    throw e;
  }
  return { client: clients.at(-1)!, onLost: (h) => (handler = h), close };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Opens a session to the last hop through the others, within `connectTimeout` seconds in all,
 * up to 1 + RETRY_DELAYS_MS.length attempts. Throws ConnectError (afterReady false: nothing ran).
 */
export async function openSession(hops: SshHop[], auth: SshAuth, connectTimeout = 15): Promise<Session> {
  const creds = credentials(hops.at(-1)!.host, auth);
  const started = Date.now();
  const deadline = started + connectTimeout * 1000;
  // Each attempt gets its share of the budget, so a timed-out first attempt leaves room to retry.
  const perAttempt = Math.max(3000, (connectTimeout * 1000) / (RETRY_DELAYS_MS.length + 1));
  for (let attempt = 1; ; attempt++) {
    try {
      return await openOnce(hops, creds, Math.min(deadline, Date.now() + perAttempt));
    } catch (e) {
      const delay = RETRY_DELAYS_MS[attempt - 1];
      const retry = e instanceof ConnectError && e.transient && delay !== undefined && Date.now() + delay < deadline - 1000;
      if (!retry) {
        if (attempt === 1 || !(e instanceof ConnectError)) throw e;
        throw new ConnectError(`${e.message} (${attempt} attempts in ${((Date.now() - started) / 1000).toFixed(1)} s)`);
      }
      await sleep(delay);
    }
  }
}
