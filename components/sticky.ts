// Sticky by source: a LAN address's connections all use one link. Stateless: the link is a function
// of the address's last octet, so it holds across restarts and needs no table on the gateway.
//
// Each of the 256 values of the octet has a fixed order of preference over a tier's links, and takes
// the first live one: a link's addresses stay on it while it is up, whatever else goes down or
// comes back. The first preferences cut the values, read with their bits reversed, into contiguous
// ranges by weight, so consecutive addresses (a DHCP pool) alternate over the links in their
// weights' ratio (see preferences for the others). The rules match values by their low bits
// (-s 0.0.0.1/0.0.0.3).
import { memoize } from "./memo";
import { carrying, type TieredMember } from "./tiers";

const BITS = 8;
const VALUES = 1 << BITS;

/** Addresses whose last octet has `value` in the bits of `mask`. */
export interface SourceMatch {
  value: number;
  mask: number;
}

export interface StickyShare {
  link: string;
  matches: SourceMatch[];
}

/** `count` values shared by weight (largest remainder, ties to the earlier member): each member's [start, end). */
function cut(start: number, count: number, weights: number[]): [number, number][] {
  const total = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((w) => (count * w) / total);
  const sizes = exact.map(Math.floor);
  const missing = count - sizes.reduce((a, b) => a + b, 0);
  const order = exact.map((_, i) => i).sort((a, b) => exact[b] - sizes[b] - (exact[a] - sizes[a]) || a - b);
  for (let k = 0; k < missing; k++) sizes[order[k]]++;
  let at = start;
  return sizes.map((n) => [at, (at += n)] as [number, number]);
}

const reverse = (value: number) => {
  let out = 0;
  for (let b = 0; b < BITS; b++) if (value & (1 << b)) out |= 1 << (BITS - 1 - b);
  return out;
};

/** A fixed pseudo-random number in (0, 1) for a value and a link name (FNV-1a, then a finaliser). */
function uniform(value: number, name: string): number {
  let h = 0x811c9dc5;
  for (const c of `${name}/${value}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (((h ^ (h >>> 16)) >>> 0) + 0.5) / 2 ** 32;
}

/**
 * Each value's links in order of preference (indices into `tier`). The first two are cuts by weight
 * (of all values, read bit-reversed; then of each first choice's range among the other links), so
 * with every link up, or one down, the shares are the weights' to a value. The rest follow weighted
 * rendezvous hashing: fair in expectation however many links are down, and still a fixed order.
 */
function preferences(tier: TieredMember[]): number[][] {
  const prefs: number[][] = Array.from({ length: VALUES }, () => []);
  const all = tier.map((_, i) => i);
  cut(0, VALUES, tier.map((m) => m.weight)).forEach(([a, b], first) => {
    const others = all.filter((i) => i !== first);
    for (let r = a; r < b; r++) prefs[r].push(first);
    if (!others.length) return;
    cut(a, b - a, others.map((i) => tier[i].weight)).forEach(([c, d], k) => {
      for (let r = c; r < d; r++) prefs[r].push(others[k]);
    });
  });
  return prefs.map((_, v) => {
    const head = prefs[reverse(v)];
    const score = all.map((i) => -Math.log(uniform(v, tier[i].link)) / tier[i].weight);
    return [...head, ...all.filter((i) => !head.includes(i)).sort((x, y) => score[x] - score[y])];
  });
}

/** preferences() by tier: every live set of a gateway asks for the same few. */
const preferencesOf = memoize(preferences, (tier: TieredMember[]) => JSON.stringify(tier.map((m) => [m.link, m.weight])), 1000);

/** Each link's values as few low-bits masks as cover them: a binary trie over the low bits. */
function masks(owners: string[]): Map<string, SourceMatch[]> {
  const out = new Map<string, SourceMatch[]>();
  const visit = (bits: number, value: number) => {
    const step = 1 << bits;
    const first = owners[value];
    let same = true;
    for (let v = value + step; v < VALUES && same; v += step) same = owners[v] === first;
    if (same) out.set(first, [...(out.get(first) ?? []), { value, mask: step - 1 }]);
    else [value, value | step].forEach((v) => visit(bits + 1, v));
  };
  visit(0, 0);
  return out;
}

/**
 * Each carrying member's addresses for the `live` links, in the order the rules test them; the
 * last one takes what is left (its matches are not needed). [] when no member is live.
 */
export function planSticky(members: TieredMember[], live: ReadonlySet<string>): StickyShare[] {
  const up = carrying(members, live);
  if (!up.length) return [];
  const tier = members.filter((m) => m.tier === up[0].tier);
  const prefs = preferencesOf(tier);
  const byLink = masks(prefs.map((order) => tier[order.find((i) => live.has(tier[i].link))!].link));
  const shares = up.map((m) => ({ link: m.link, matches: byLink.get(m.link) ?? [] }));
  // The member with the most masks goes last, where one unconditional rule replaces them.
  const last = shares.reduce((best, s, i) => (s.matches.length > shares[best].matches.length ? i : best), 0);
  return [...shares.slice(0, last), ...shares.slice(last + 1), shares[last]];
}

/** Rules a sticky split needs: one per mask, the last member's one. */
export function stickyRuleCount(members: TieredMember[], live: ReadonlySet<string>): number {
  const shares = planSticky(members, live);
  return shares.length ? shares.slice(0, -1).reduce((n, s) => n + s.matches.length, 0) + 1 : 0;
}
