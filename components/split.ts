// The exact split of new connections by weight, as chains of nth counters whose length does not
// grow with the weights. A rule `-m statistic --mode nth --every N` that sees a stream takes one
// of every N connections of it and the rest go on to the next rule. When N divides the number of
// connections that rule sees per period, its counter is back where it started at the end of every
// period: so each chain delivers its exact counts over every period, and the whole split repeats
// with period W = Σweights/gcd. Any W consecutive connections then hold exactly each weight's share.
import { memoize } from "./memo";

/** Where a rule sends what it takes: a link (its position in the counts) or another chain. */
export type SplitTarget = { link: number } | { chain: number };

export interface SplitRule {
  /** Takes one of every `every` connections reaching the rule; undefined: all of them. */
  every?: number;
  to: SplitTarget;
}

export interface SplitChain {
  /** Connections the chain sees per period of its own. */
  size: number;
  rules: SplitRule[];
}

export interface Split {
  /** chains[0] is the entry; a chain may be the target of several rules (its counters stay exact). */
  chains: SplitChain[];
  /** Rules a connection walks through the split, its final MARK included: the worst and the mean. */
  walk: { worst: number; mean: number };
}

/** At most this many connections per period, a chain is one rule per connection (≤ FLAT rules walked). */
const FLAT = 12;
/** The largest factor a chain splits its stream by into equal parts (at most that many rules walked). */
const SMALL_FACTOR = 7;

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function divisors(n: number): number[] {
  const low: number[] = [];
  const high: number[] = [];
  for (let d = 1; d * d <= n; d++) {
    if (n % d) continue;
    low.push(d);
    if (d * d !== n) high.unshift(n / d);
  }
  return [...low, ...high];
}

const live = (counts: number[]) => counts.flatMap((c, i) => (c > 0 ? [i] : []));
const largest = (counts: number[], among: number[]) => among.reduce((a, b) => (counts[b] > counts[a] ? b : a));
const smallest = (counts: number[], among: number[]) => among.reduce((a, b) => (counts[b] < counts[a] ? b : a));
const sameTarget = (a: SplitTarget, b: SplitTarget) =>
  "link" in a ? "link" in b && a.link === b.link : "chain" in b && a.chain === b.chain;

/**
 * Chains for `weights` (any positive integers; zero = not live). Each step of a chain is one of:
 * - one link left: everything to it;
 * - the other links fit into one part of the stream (a divisor P of the remaining M with
 *   P ≥ their sum R): one rule sends every (M/P)-th connection to a chain holding all of them
 *   (topped up with the largest link), the rest goes to the largest link;
 * - M small: one rule per connection;
 * - M has a factor a ≤ SMALL_FACTOR: a equal parts, filled with the links largest first, so most
 *   parts hold one link only; equal parts share one chain and trailing parts of one link one rule;
 * - otherwise (M prime or its factors large): one connection of the smallest link, leaving M−1.
 */
export function planSplit(weights: number[]): Split {
  const g = live(weights).reduce((a, i) => gcd(a, weights[i]), 0);
  const reduced = weights.map((w) => (w > 0 ? w / g : 0));
  return planned(reduced);
}

/**
 * Splits already planned, by reduced weights: validation and planning ask for the same ones, and
 * so do a fleet's gateways.
 */
const planned = memoize((reduced: number[]) => buildSplit(reduced), (reduced) => reduced.join(","), 10_000);

function buildSplit(reduced: number[]): Split {
  const chains: SplitChain[] = [];
  const known = new Map<string, number>();

  const target = (counts: number[]): SplitTarget => {
    const links = live(counts);
    return links.length === 1 ? { link: links[0] } : { chain: chain(counts) };
  };

  const chain = (start: number[]): number => {
    const key = start.join(",");
    const found = known.get(key);
    if (found !== undefined) return found;
    const id = chains.push({ size: start.reduce((a, b) => a + b, 0), rules: [] }) - 1;
    known.set(key, id);
    const rules = chains[id].rules;
    const counts = [...start];
    let m = chains[id].size;
    for (;;) {
      const links = live(counts);
      if (links.length === 1) {
        rules.push({ to: { link: links[0] } });
        return id;
      }
      const top = largest(counts, links);
      const rest = m - counts[top];
      const divs = divisors(m);
      const part = divs.find((d) => d >= rest && d < m);
      if (part !== undefined) {
        rules.push({ every: m / part, to: target(counts.map((c, i) => (i === top ? part - rest : c))) });
        rules.push({ to: { link: top } });
        return id;
      }
      if (m <= FLAT) {
        // The largest bite one rule can take whole from one link.
        const bite = [...divs].reverse().find((d) => d < m && links.some((i) => counts[i] >= d))!;
        const owner = largest(counts, links);
        rules.push({ every: m / bite, to: { link: owner } });
        counts[owner] -= bite;
        m -= bite;
        continue;
      }
      const factor = divs[1];
      if (factor !== undefined && factor <= SMALL_FACTOR) {
        // Mixed parts first (the worst walk is then shortest), the largest link's parts last, where
        // they collapse into the one unconditional rule.
        const poured = equalParts(counts, links, m, factor);
        const parts = [...poured.filter((t) => "chain" in t), ...poured.filter((t) => "link" in t).reverse()];
        let end = parts.length;
        while (end > 1 && sameTarget(parts[end - 2], parts[end - 1])) end--;
        parts.slice(0, end - 1).forEach((to, k) => rules.push({ every: factor - k, to }));
        rules.push({ to: parts[end - 1] });
        return id;
      }
      const owner = smallest(counts, links);
      rules.push({ every: m, to: { link: owner } });
      counts[owner] -= 1;
      m -= 1;
    }
  };

  /** `factor` parts of m/factor connections: the links, largest first, poured into them in turn. */
  const equalParts = (counts: number[], links: number[], m: number, factor: number): SplitTarget[] => {
    const size = m / factor;
    const parts: SplitTarget[] = [];
    let part = counts.map(() => 0);
    let filled = 0;
    for (const i of [...links].sort((a, b) => counts[b] - counts[a] || a - b)) {
      for (let left = counts[i]; left > 0; ) {
        const take = Math.min(left, size - filled);
        part[i] += take;
        left -= take;
        filled += take;
        if (filled === size) {
          parts.push(target(part));
          part = counts.map(() => 0);
          filled = 0;
        }
      }
    }
    return parts;
  };

  chain(reduced);
  return { chains, walk: walkOf(chains) };
}

/**
 * Rules walked per connection, from the chains' sizes: rule k of a chain sees what the k rules
 * above left and takes 1/every of it. A link reached by a jump costs its MARK rule too; the last,
 * unconditional rule of a chain marks in place.
 */
function walkOf(chains: SplitChain[]): { worst: number; mean: number } {
  const memo = new Map<number, { worst: number; mean: number }>();
  const of = (id: number): { worst: number; mean: number } => {
    const done = memo.get(id);
    if (done) return done;
    const { size, rules } = chains[id];
    let seen = size;
    let worst = 0;
    let mean = 0;
    rules.forEach((r, k) => {
      const taken = r.every ? seen / r.every : seen;
      seen -= taken;
      const below = "chain" in r.to ? of(r.to.chain) : { worst: r.every ? 1 : 0, mean: r.every ? 1 : 0 };
      worst = Math.max(worst, k + 1 + below.worst);
      mean += (taken / size) * (k + 1 + below.mean);
    });
    const result = { worst, mean };
    memo.set(id, result);
    return result;
  };
  return of(0);
}

/** Rules of the split of `weights`: what one variant's balancing chains hold. */
export function splitRuleCount(weights: number[]): number {
  return planSplit(weights).chains.reduce((n, c) => n + c.rules.length, 0);
}
