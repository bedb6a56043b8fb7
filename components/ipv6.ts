// IPv6 arithmetic for the cross-field checks and the canonical text ip6tables-save and `ip -6`
// print (zod validates the syntax first).

const GROUPS = 8;

/** `2001:db8::10` (or with an embedded IPv4 tail, `::ffff:192.0.2.1`) → its 128-bit value. */
export function parseIpv6(address: string): bigint {
  let text = address.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number);
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = tail === undefined ? left : [...left, ...Array(GROUPS - left.length - right.length).fill("0"), ...right];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/**
 * The text the kernel's tools print (glibc's inet_ntop, RFC 5952): lowercase, the first longest run
 * of two or more zero groups as `::`, and an IPv4 tail in dotted form after six zero groups
 * (`::192.0.2.1`) or five and ffff (`::ffff:192.0.2.1`).
 */
export function formatIpv6(value: bigint): string {
  const groups = Array.from({ length: GROUPS }, (_, i) => Number((value >> BigInt(16 * (GROUPS - 1 - i))) & 0xffffn));
  let best = { at: -1, length: 1 };
  for (let i = 0; i < GROUPS; ) {
    let j = i;
    while (j < GROUPS && groups[j] === 0) j++;
    if (j - i > best.length) best = { at: i, length: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.at === 0 && (best.length === 6 || (best.length === 5 && groups[5] === 0xffff))) {
    const v4 = [groups[6] >> 8, groups[6] & 0xff, groups[7] >> 8, groups[7] & 0xff].join(".");
    return best.length === 6 ? `::${v4}` : `::ffff:${v4}`;
  }
  if (best.at < 0) return hex.join(":");
  return `${hex.slice(0, best.at).join(":")}::${hex.slice(best.at + best.length).join(":")}`;
}

export interface Subnet6 {
  network: bigint;
  last: bigint;
  prefix: number;
}

/** `2001:db8:10::/64` (host bits masked off; a bare address is a /128) → numeric bounds. */
export function parseCidr6(cidr: string): Subnet6 {
  const [addr, len] = cidr.split("/");
  const prefix = len === undefined ? 128 : Number(len);
  const size = 1n << BigInt(128 - prefix);
  const network = (parseIpv6(addr) / size) * size;
  return { network, last: network + size - 1n, prefix };
}

export const inSubnet6 = (address: bigint, s: Subnet6): boolean => address >= s.network && address <= s.last;
export const overlaps6 = (a: Subnet6, b: Subnet6): boolean => a.network <= b.last && b.network <= a.last;

/** An address or network as ip6tables-save prints it: canonical text, a bare host as `/128`. */
export function canonical6(text: string): string {
  const [addr, len] = text.split("/");
  return `${formatIpv6(parseIpv6(addr))}/${len ?? 128}`;
}

/** An address alone in canonical text. */
export const canonicalAddress6 = (address: string): string => formatIpv6(parseIpv6(address));

/** The network's 32 hex digits and its prefix length, `20010db8…:64`: what the passive reader compares. */
export function nibbles6(cidr: string): string {
  const s = parseCidr6(cidr);
  return `${s.network.toString(16).padStart(32, "0")}:${s.prefix}`;
}
