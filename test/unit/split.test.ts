import { describe, expect, it } from "vitest";
import { planSplit } from "../../components/split";
import { inexactWindow, Mangle, periodShares, splitBalancer, walkOf } from "./kernel-sim";

describe("the kernel simulation the split is checked with", () => {
  const balance = (...rules: string[]) =>
    new Mangle()
      .restore(["*mangle", ":MWAN-BALANCE - [0:0]", ":MWAN-MARK-1 - [0:0]", "-A MWAN-MARK-1 -j MARK --set-xmark 0x100/0xff00", ...rules.map((r) => `-A MWAN-BALANCE ${r}`), "COMMIT"].join("\n"))
      .balancer();

  it("an nth rule takes the 1st, (N+1)th, … connection reaching it; -g ends the walk where its chain ends", () => {
    const b = balance("-m statistic --mode nth --every 3 --packet 0 -g MWAN-MARK-1", "-j MARK --set-xmark 0x200/0xff00");
    expect(b.feed(6).map((c) => c.mark)).toEqual([0x100, 0x200, 0x200, 0x100, 0x200, 0x200]);
    expect(b.feed(3).map((c) => c.walked)).toEqual([2, 2, 2]);
  });

  it("MARK does not end the chain: a later MARK wins, and a chain may end with none", () => {
    expect(balance("-j MARK --set-xmark 0x100/0xff00", "-j MARK --set-xmark 0x200/0xff00").connect()).toEqual({ mark: 0x200, walked: 2 });
    expect(balance("-m statistic --mode nth --every 2 --packet 0 -g MWAN-MARK-1").feed(2)).toEqual([{ mark: 0x100, walked: 2 }, { walked: 1 }]);
  });

  it("finds an inexact window that the first one hides: 1:1 where 2:1 was meant", () => {
    const b = balance("-m statistic --mode nth --every 2 --packet 0 -g MWAN-MARK-1", "-j MARK --set-xmark 0x200/0xff00");
    expect(inexactWindow(b.feed(6), new Map([[0x100, 2], [0x200, 1]]), 3)).toMatchObject({ start: 1 });
  });

  it("refuses rules the renderer does not print, so a renderer change cannot pass unmodelled", () => {
    expect(() => balance("-m statistic --mode nth --every 2 --packet 1 -g MWAN-MARK-1")).toThrow(/does not model/);
    expect(() => balance("-j MWAN-MARK-1")).toThrow(/does not model/);
    expect(() => balance("-g MWAN-CLASSIFY")).toThrow(/out of the split/);
  });
});

/** Deterministic numbers in [0, 1): mulberry32. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const LINKS = 16;
const isPrime = (n: number) => n > 1 && Array.from({ length: Math.floor(Math.sqrt(n)) - 1 }, (_, i) => i + 2).every((d) => n % d);
const weightSets = [
  ...[1, 2, 3].map((seed) => {
    const next = random(seed);
    return { name: `random (seed ${seed})`, weights: Array.from({ length: LINKS }, () => 1 + Math.floor(next() * 1000)) };
  }),
  { name: "the primes below 1000", weights: Array.from({ length: 1000 }, (_, i) => 1000 - i).filter(isPrime).slice(0, LINKS) },
  { name: "1000, 999, 998, …", weights: Array.from({ length: LINKS }, (_, i) => 1000 - i) },
  { name: "1 and 1000 alternating", weights: Array.from({ length: LINKS }, (_, i) => (i % 2 ? 1000 : 1)) },
  { name: "1000, 1, 999, 2, …", weights: Array.from({ length: LINKS }, (_, i) => (i % 2 ? 1 + (i >> 1) : 1000 - (i >> 1))) },
].map((set, i) => ({ ...set, seed: 100 + i }));

/** Every 2-link subset, every link, and `extra` random subsets of 3 or more (as masks). */
function subsets(seed: number, extra: number): number[] {
  const masks = [(1 << LINKS) - 1];
  for (let a = 0; a < LINKS; a++) for (let b = a + 1; b < LINKS; b++) masks.push((1 << a) | (1 << b));
  const next = random(seed);
  while (masks.length < LINKS * (LINKS - 1) / 2 + 1 + extra) {
    const mask = Math.floor(next() * (1 << LINKS));
    if (mask.toString(2).replace(/0/g, "").length >= 3) masks.push(mask);
  }
  return masks;
}

/** The walk a connection may take: the split's whole point is that it does not grow with the weights. */
const WORST = 30;
const MEAN = 13;

describe("planSplit over 16 links of weights up to 1000", () => {
  it.each(weightSets)(`$name: exact shares in every window of a period, walks ≤ ${WORST} rules, ≤ ${MEAN} on average`, ({ weights, seed }) => {
    const problems: string[] = [];
    for (const mask of subsets(seed, 60)) {
      const live = weights.map((w, i) => (mask & (1 << i) ? w : 0));
      const split = planSplit(live);
      const shares = periodShares(live);
      const period = shares.reduce((a, b) => a + b, 0);
      // Three periods: windows starting anywhere in the first two.
      const connections = splitBalancer(split, LINKS).feed(3 * period);
      const expected = new Map(shares.flatMap((n, i) => (n ? [[i + 1, n] as const] : [])));
      const at = `${JSON.stringify(live)}:`;
      const inexact = inexactWindow(connections, expected, period);
      if (inexact) problems.push(`${at} window from ${inexact.start} holds ${JSON.stringify([...inexact.counts])}`);
      const walk = walkOf(connections);
      if (walk.worst !== split.walk.worst || Math.abs(walk.mean - split.walk.mean) > 1e-9)
        problems.push(`${at} walks ${JSON.stringify(walk)}, planSplit says ${JSON.stringify(split.walk)}`);
      if (split.walk.worst > WORST || split.walk.mean > MEAN) problems.push(`${at} walk ${JSON.stringify(split.walk)}`);
    }
    expect(problems).toEqual([]);
  });
});
