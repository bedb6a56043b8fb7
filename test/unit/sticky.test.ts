// Sticky by source, planned: which link each last-octet value of a LAN address takes, for every set
// of live links. The rules test the shares in order and the last share takes the rest, so the
// shares' masks must cover every value exactly once for the rules to mean what the plan says.
import { describe, expect, it } from "vitest";
import { planSticky, stickyRuleCount, type StickyShare } from "../../components/sticky";
import { carrying, type TieredMember } from "../../components/tiers";

const VALUES = Array.from({ length: 256 }, (_, v) => v);
const hits = (share: StickyShare, v: number) => share.matches.some((m) => (v & m.mask) === m.value);

/** Value → link as the rules decide it: the first share with a mask that matches, else the last share. */
function owners(shares: StickyShare[]): string[] {
  return VALUES.map((v) => (shares.slice(0, -1).find((s) => hits(s, v)) ?? shares[shares.length - 1]).link);
}

/** Every non-empty subset of the members' links. */
function liveSets(members: TieredMember[]): Set<string>[] {
  return Array.from({ length: 2 ** members.length - 1 }, (_, i) => new Set(members.filter((_, k) => (i + 1) & (1 << k)).map((m) => m.link)));
}

const memberSets: Record<string, TieredMember[]> = {
  "3:1": [{ link: "isp1", weight: 3, tier: 1 }, { link: "isp2", weight: 1, tier: 1 }],
  "five equal": ["a", "b", "c", "d", "e"].map((link) => ({ link, weight: 1, tier: 1 })),
  "5:3:2 and two backups 1:4": [
    { link: "a", weight: 5, tier: 1 },
    { link: "b", weight: 3, tier: 1 },
    { link: "c", weight: 2, tier: 1 },
    { link: "lte1", weight: 1, tier: 2 },
    { link: "lte2", weight: 4, tier: 2 },
  ],
  "7:11:13:1000": [
    { link: "a", weight: 7, tier: 1 },
    { link: "b", weight: 11, tier: 1 },
    { link: "c", weight: 13, tier: 1 },
    { link: "d", weight: 1000, tier: 1 },
  ],
};

describe.each(Object.keys(memberSets))("planSticky: %s", (set) => {
  const members = memberSets[set];
  const sets = liveSets(members);
  const best = (live: Set<string>) => carrying(members, live)[0].tier;
  /** Values that moved from a link live in both sets, for every pair `bigger` ⊇ `smaller` that `pair` accepts. */
  const movedWhileLive = (pair: (bigger: Set<string>, smaller: Set<string>) => boolean) =>
    sets.flatMap((bigger) => {
      const before = owners(planSticky(members, bigger));
      return sets.flatMap((smaller) => {
        if (![...smaller].every((l) => bigger.has(l)) || best(smaller) !== best(bigger) || !pair(bigger, smaller)) return [];
        const after = owners(planSticky(members, smaller));
        const moved = VALUES.filter((v) => after[v] !== before[v] && smaller.has(before[v]));
        return moved.length ? [`${[...bigger].join("+")} → ${[...smaller].join("+")}: ${moved.join(" ")}`] : [];
      });
    });

  it("every last-octet value is owned by exactly one carrying link, in every live set", () => {
    for (const live of sets) {
      const shares = planSticky(members, live);
      const key = [...live].join("+");
      expect(shares.map((s) => s.link).sort(), key).toEqual(carrying(members, live).map((m) => m.link).sort());
      for (const v of VALUES) expect(shares.filter((s) => hits(s, v)).length, `${key}: value ${v}`).toBe(1);
      // The rules need every mask but the last share's, one rule each, and one for the rest.
      expect(stickyRuleCount(members, live), key).toBe(shares.slice(0, -1).reduce((n, s) => n + s.matches.length, 0) + 1);
    }
  });

  // The first two preferences are cuts by weight: exact to a value with the tier's links all up or
  // one down. Deeper ones are rendezvous hashing, fair in expectation: 256 values hold it to ~5 %.
  it("gives each carrying link its weight's share of the 256 values: within one with at most one link of its tier down, else within 13", () => {
    for (const live of sets) {
      const up = carrying(members, live);
      const down = members.filter((m) => m.tier === up[0].tier).length - up.length;
      const total = up.reduce((n, m) => n + m.weight, 0);
      const owned = owners(planSticky(members, live));
      for (const m of up) {
        const count = owned.filter((o) => o === m.link).length;
        expect(Math.abs(count - (256 * m.weight) / total), `${[...live].join("+")}: ${m.link} has ${count}`).toBeLessThanOrEqual(down <= 1 ? 1 : 13);
      }
    }
  });

  it("never moves a value of a live link from where it is with every link up", () => {
    const everyLink = new Set(members.map((m) => m.link));
    expect(movedWhileLive((bigger) => bigger.size === everyLink.size)).toEqual([]);
  });

  it("moves only the addresses of the link that went down, whichever were down before", () => {
    expect(movedWhileLive(() => true)).toEqual([]);
  });
});

describe("planSticky: consecutive addresses (a DHCP pool)", () => {
  it("alternate over the links in their weights' ratio", () => {
    // Values read bit-reversed: 3:1 gives isp2 the addresses whose two low bits are 11.
    const owned = owners(planSticky(memberSets["3:1"], new Set(["isp1", "isp2"])));
    for (let start = 0; start + 4 <= 256; start++) {
      expect(owned.slice(start, start + 4).filter((o) => o === "isp2"), `from .${start}`).toHaveLength(1);
    }
    const equal = owners(planSticky(memberSets["five equal"].slice(0, 2), new Set(["a", "b"])));
    for (let v = 1; v < 256; v++) expect(equal[v]).not.toBe(equal[v - 1]);
  });

  it("plans nothing when no member is live", () => {
    expect(planSticky(memberSets["3:1"], new Set(["isp9"]))).toEqual([]);
    expect(stickyRuleCount(memberSets["3:1"], new Set())).toBe(0);
  });
});
