// A pinned SSH host key: the line as `ssh-keyscan` prints it (or just `type base64`), and the
// host-key algorithms a client must ask for. A server holding several host keys shows the one it
// and the client prefer (ed25519 first); a pin of another type only matches if the client asks
// for that type alone.

/** `[host] type base64 [comment]`: ssh-keyscan's `host ssh-ed25519 AAAA…`, or authorized_keys form. */
export const HOST_KEY_LINE = /^(?:\S+\s+)?(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521))\s+([A-Za-z0-9+/]+={0,2})(?:\s.*)?$/;

export interface HostKey {
  type: string;
  /** The key blob, compared byte for byte with what the server offers. */
  blob: Buffer;
}

/** The type and blob of a line that matches HOST_KEY_LINE; throws on any other. */
export function parseHostKey(line: string): HostKey {
  const m = HOST_KEY_LINE.exec(line.trim());
  if (!m) throw new Error("not an OpenSSH public host key line");
  return { type: m[1], blob: Buffer.from(m[2], "base64") };
}

/** Why a line that looks right is not a key of its stated type (a truncated or mixed-up copy), if so. */
export function hostKeyProblem(line: string): string | undefined {
  const m = HOST_KEY_LINE.exec(line.trim());
  if (!m) return undefined; // the pattern's own message says it
  const { type, blob } = parseHostKey(line);
  // The blob starts with its own type name: uint32 length, then the name.
  const inner = blob.length >= 4 ? blob.subarray(4, 4 + blob.readUInt32BE(0)).toString("latin1") : "";
  return inner === type ? undefined : `the key data is not a ${type} key${inner && /^[\x21-\x7e]+$/.test(inner) ? ` (it says ${inner})` : ""}`;
}

/** What the client offers as host-key algorithms so that the server proves the pinned key. */
export function hostKeyAlgorithms(type: string): string[] {
  // An RSA key signs with SHA-2 on current servers (OpenSSH refuses SHA-1 `ssh-rsa` signatures).
  return type === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [type];
}
