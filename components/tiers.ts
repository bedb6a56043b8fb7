// Which members of a policy (or of the default balancing) carry new connections for a set of live
// links: the live ones of the lowest tier that has one. Shared by the rule budget and the planner.

export interface TieredMember {
  link: string;
  weight: number;
  tier: number;
}

/** The live members of the best tier with one; [] when no member is live. */
export function carrying<M extends TieredMember>(members: M[], live: ReadonlySet<string>): M[] {
  const up = members.filter((m) => live.has(m.link));
  if (!up.length) return [];
  const best = Math.min(...up.map((m) => m.tier));
  return up.filter((m) => m.tier === best);
}

/** The carrying members' weights by position in `links` (0: carries nothing), as planSplit takes them. */
export function carryingWeights(links: readonly { name: string }[], members: TieredMember[], live: ReadonlySet<string>): number[] {
  const weights = new Map(carrying(members, live).map((m) => [m.link, m.weight]));
  return links.map((l) => weights.get(l.name) ?? 0);
}
