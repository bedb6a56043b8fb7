// The balancing variants: for every set of live links, the chains that decide which link a new
// connection takes: the default split (every link, by weight, best live tier first) and each
// policy's (its members; by source address when sticky; or its fallback when no member is up).
// The health daemon only picks one of these files; it never builds a rule.
import type { Policy } from "./config";
import { planSplit, type SplitRule } from "./split";
import type { Family } from "./families";
import { formatIpv6 } from "./ipv6";
import { planSticky, type SourceMatch } from "./sticky";
import { carrying, carryingWeights, type TieredMember } from "./tiers";

/** The chain new connections to balance enter; every balancing chain's name starts with it. */
export const BALANCE_CHAIN = "MWAN-BALANCE";
/** Policy n's (1-based) entry chain: its split's chains are `<this>-<k>`. */
export const policyChain = (n: number) => `${BALANCE_CHAIN}-P${n}`;

export interface BalanceRule {
  /** The matches with a trailing space, or "" for the rule that takes what is left. */
  match: string;
  /** `-g <chain>` (a chain of a split, or a link's mark chain), or `-j MARK …` in place. */
  target: string;
}

export interface BalanceChain {
  name: string;
  rules: BalanceRule[];
}

export interface Variant {
  /** Live links joined by `+` in config order, or `none`: the file name the daemon picks. */
  key: string;
  live: string[];
  /** Every balancing chain of the plan, the same names in every variant; those not used here are empty. */
  chains: BalanceChain[];
  /** Rules a new connection walks through the default split (its MARK included): worst and mean. */
  walk: { worst: number; mean: number };
  /** Links that take new connections here (by the default split or a policy's), in config order. */
  carrying: string[];
  /** Whether `carrying` differs from `live` (a backup waits, a policy's fallback, the last resort). */
  carryingDiffers: boolean;
  /** Positions (1-based) of live links with failback `move` that take none here. */
  idleMove: number[];
}

/** What the variants need of a link. */
export interface VariantLink {
  index: number;
  name: string;
  weight: number;
  tier: number;
  markChain: string;
  fwmark: string;
  failback: "keep" | "move";
}

type Group = { chains: BalanceChain[]; carrying: string[] };

const asMembers = (links: VariantLink[]): TieredMember[] => links.map((l) => ({ link: l.name, weight: l.weight, tier: l.tier }));

/** A planSplit over `weights` (by link position) as chains named `<entry>`, `<entry>-1`, …. */
function splitChains(links: VariantLink[], weights: number[], entry: string): Group & { walk: Variant["walk"] } {
  const split = planSplit(weights);
  const name = (id: number) => (id === 0 ? entry : `${entry}-${id}`);
  const target = (r: SplitRule) => {
    if ("chain" in r.to) return `-g ${name(r.to.chain)}`;
    // The rule that takes what is left ends its chain: it can mark in place.
    return r.every ? `-g ${links[r.to.link].markChain}` : `-j MARK --set-xmark ${links[r.to.link].fwmark}`;
  };
  return {
    chains: split.chains.map((c, id) => ({
      name: name(id),
      rules: c.rules.map((r) => ({ match: r.every ? `-m statistic --mode nth --every ${r.every} --packet 0 ` : "", target: target(r) })),
    })),
    carrying: links.filter((_, i) => weights[i] > 0).map((l) => l.name),
    walk: split.walk,
  };
}

/** The source match of a last-octet value under a mask, as iptables-save / ip6tables-save print it. */
const SOURCE_MATCH: Record<Family, (m: SourceMatch) => string> = {
  4: (m) => `-s 0.0.0.${m.value}/0.0.0.${m.mask} `,
  6: (m) => `-s ${formatIpv6(BigInt(m.value))}/${formatIpv6(BigInt(m.mask))} `,
};

/** Sticky by source: one rule per address mask of each carrying member but the last, which takes the rest. */
function stickyChain(links: VariantLink[], members: TieredMember[], live: ReadonlySet<string>, entry: string, family: Family): Group {
  const shares = planSticky(members, live);
  const link = (name: string) => links.find((l) => l.name === name)!;
  const rules = shares.flatMap((s, i) =>
    i === shares.length - 1
      ? [{ match: "", target: `-j MARK --set-xmark ${link(s.link).fwmark}` }]
      : s.matches.map((m) => ({ match: SOURCE_MATCH[family](m), target: `-g ${link(s.link).markChain}` })),
  );
  return { chains: [{ name: entry, rules }], carrying: links.filter((l) => shares.some((s) => s.link === l.name)).map((l) => l.name) };
}

/** Policy n's chains when `live` links are up. */
function policyGroup(links: VariantLink[], policy: Policy, n: number, live: ReadonlySet<string>, fallback: string, unreachable: string | undefined, family: Family): Group {
  const members = policy.members ?? asMembers(links);
  const entry = policyChain(n);
  if (!carrying(members, live).length) {
    const target = policy.whenDown === "unreachable" ? `-j MARK --set-xmark ${unreachable}` : `-g ${fallback}`;
    return { chains: [{ name: entry, rules: [{ match: "", target }] }], carrying: [] };
  }
  if (policy.sticky === "source") return stickyChain(links, members, live, entry, family);
  // Every link by its own weight and tier: the default split itself, not a copy of it.
  if (!policy.members) return { chains: [{ name: entry, rules: [{ match: "", target: `-g ${BALANCE_CHAIN}` }] }], carrying: carrying(members, live).map((m) => m.link) };
  return splitChains(links, carryingWeights(links, members, live), entry);
}

/**
 * One variant per non-empty set of live links, plus `none` (every link down). `fallback`: the chain
 * of the default balancing (its selection), where a policy with no member up hands connections;
 * `unreachable`: the mark that routes a connection nowhere, for a policy that refuses them instead.
 * The families' variants differ only in how a sticky policy matches source addresses.
 */
export function planVariants(links: VariantLink[], policies: Policy[], lastResort: "all" | "main", fallback: string, unreachable?: string, family: Family = 4): Variant[] {
  const sets: string[][] = [];
  for (let mask = 1; mask < 1 << links.length; mask++) sets.push(links.filter((_, i) => mask & (1 << i)).map((l) => l.name));
  const plan = (liveNames: string[]) => {
    const live = new Set(liveNames);
    const own = liveNames.length
      ? splitChains(links, carryingWeights(links, asMembers(links), live), BALANCE_CHAIN)
      : { chains: [], carrying: [], walk: { worst: 0, mean: 0 } };
    const groups = [own, ...policies.map((p, i) => policyGroup(links, p, i + 1, live, fallback, unreachable, family))];
    const carried = new Set(groups.flatMap((g) => g.carrying));
    return {
      groups,
      walk: own.walk,
      carrying: links.filter((l) => carried.has(l.name)).map((l) => l.name),
      idleMove: links.filter((l) => live.has(l.name) && !carried.has(l.name) && l.failback === "move").map((l) => l.index),
    };
  };
  const planned = sets.map((live) => ({ key: live.join("+"), live, ...plan(live) }));
  // Every link down: probes can all fail because the targets (not the links) are gone, so "all"
  // keeps balancing as if every link were up; "main" leaves new connections to the main table
  // (and the policies to what they do with no member up).
  const everyLink = planned[planned.length - 1];
  planned.push({ ...(lastResort === "all" ? { ...everyLink, idleMove: [] } : plan([])), key: "none", live: [] });

  // One chain set for all, group by group: a swap to a variant with fewer chains empties the others.
  const names = planned[0].groups.map((_, g) => {
    const longest = planned.reduce((a, v) => (v.groups[g].chains.length > a.groups[g].chains.length ? v : a));
    return longest.groups[g].chains.map((c) => c.name);
  });
  return planned.map(({ key, live, groups, walk, carrying: carried, idleMove }) => ({
    key,
    live,
    chains: names.flatMap((group, g) => group.map((name) => groups[g].chains.find((c) => c.name === name) ?? { name, rules: [] })),
    walk,
    carrying: carried,
    carryingDiffers: carried.join("+") !== live.join("+"),
    idleMove,
  }));
}
