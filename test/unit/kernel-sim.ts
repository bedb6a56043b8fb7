// What the kernel does with the balancing rules, simulated: iptables-restore --noflush of rendered
// restore text into the mangle table, then new connections walked through MWAN-BALANCE with each
// nth counter of xt_statistic. The split's own accounting (planSplit's walk) is checked against it.
import type { Split } from "../../components/split";

type Target = { goto: string } | { mark: number; mask: number };

interface Rule {
  /** `--every N` stored as the kernel does: N−1, and the counter it compares against. */
  every?: { last: number; count: number };
  target: Target;
}

/** The only chains the simulation walks: the split's and the links' mark chains. */
const WALKED = /^MWAN-(BALANCE(-\d+)?|MARK-\d+)$/;
/** The rule shapes the renderer prints in those chains; anything else must fail the test. */
const RULE = /^(?:-m statistic --mode nth --every (\d+) --packet 0 )?(?:-g (\S+)|-j MARK --set-xmark (0x[0-9a-f]+)\/(0x[0-9a-f]+))$/;

function nth(every: number): Rule["every"] {
  // xt_statistic: the counter starts at every−1−packet and a packet matches when it wraps to 0,
  // so with --packet 0 the first packet reaching the rule matches.
  return { last: every - 1, count: every - 1 };
}

function parseRule(chain: string, text: string): Rule {
  const m = RULE.exec(text);
  if (!m) throw new Error(`${chain}: a rule the simulation does not model: ${text}`);
  const target = m[2] ? { goto: m[2] } : { mark: Number(m[3]), mask: Number(m[4]) };
  return { ...(m[1] ? { every: nth(Number(m[1])) } : {}), target };
}

export interface Connection {
  /** The packet mark after the split; undefined when no MARK rule was reached. */
  mark?: number;
  /** Rules evaluated, the MARK rules included. */
  walked: number;
}

/** Chains of parsed rules, each rule with its own counter: one new connection at a time. */
export class Balancer {
  constructor(
    private readonly chains: Map<string, Rule[]>,
    private readonly entry: string,
  ) {
    for (const rules of chains.values())
      for (const r of rules)
        if ("goto" in r.target && !chains.has(r.target.goto)) throw new Error(`-g out of the split's chains: ${r.target.goto}`);
  }

  /** One connection entering the entry chain, its caller's mark byte clear (MWAN-PRE returns on a mark). */
  connect(): Connection {
    let mark: number | undefined;
    let walked = 0;
    const visited = new Set<string>();
    let chain = this.entry;
    let rules = this.chains.get(chain)!;
    for (let i = 0; i < rules.length; ) {
      const r = rules[i];
      walked++;
      if (r.every) {
        r.every.count = r.every.count === r.every.last ? 0 : r.every.count + 1;
        if (r.every.count !== 0) {
          i++;
          continue;
        }
      }
      if ("goto" in r.target) {
        // iptables refuses loops; a chain reached twice in one walk would be one.
        visited.add(chain);
        chain = r.target.goto;
        if (visited.has(chain)) throw new Error(`loop through ${chain}`);
        rules = this.chains.get(chain)!;
        i = 0;
      } else {
        // MARK does not end the chain: the walk goes on with the next rule.
        mark = ((mark ?? 0) & ~r.target.mask) ^ r.target.mark;
        i++;
      }
    }
    // The end of a chain reached by -g ends the walk: it returns to MWAN-BALANCE's caller.
    return { mark, walked };
  }

  feed(connections: number): Connection[] {
    return Array.from({ length: connections }, () => this.connect());
  }
}

/** The mangle table as iptables-restore --noflush leaves it: rule texts per chain. */
export class Mangle {
  private readonly chains = new Map<string, string[]>();

  /** Restores `text`'s mangle table: a declared chain is created or flushed, `-A` appends. */
  restore(text: string): this {
    let table: string | undefined;
    for (const line of text.split("\n")) {
      if (line.startsWith("*")) table = line.slice(1);
      if (table !== "mangle") continue;
      const declared = /^:(\S+) /.exec(line);
      if (declared) this.chains.set(declared[1], []);
      const appended = /^-A (\S+) (.*)$/.exec(line);
      if (appended) {
        const rules = this.chains.get(appended[1]);
        // Built-in chains exist undeclared; the walked ones must be declared (iptables-restore fails otherwise).
        if (!rules && WALKED.test(appended[1])) throw new Error(`-A to an undeclared chain: ${line}`);
        rules?.push(appended[2]);
      } else if (/^-[^A]/.test(line) && WALKED.test(line.split(" ")[1])) {
        throw new Error(`a rule the simulation does not model: ${line}`);
      }
    }
    return this;
  }

  /** The split as the kernel runs it now: every walked chain's rules with fresh counters. */
  balancer(): Balancer {
    const walked = [...this.chains].filter(([name]) => WALKED.test(name));
    return new Balancer(new Map(walked.map(([name, rules]) => [name, rules.map((r) => parseRule(name, r))])), "MWAN-BALANCE");
  }
}

/**
 * planSplit's chains as the kernel would run them, without rendering: link i is marked i+1, through
 * a mark chain of its own, or in place by a chain's last, unconditional rule.
 */
export function splitBalancer(split: Split, links: number): Balancer {
  const chains = new Map<string, Rule[]>();
  const mark = (link: number): Target => ({ mark: link + 1, mask: 0xff });
  for (let link = 0; link < links; link++) chains.set(`link-${link}`, [{ target: mark(link) }]);
  split.chains.forEach((c, id) =>
    chains.set(
      `chain-${id}`,
      c.rules.map((r) => {
        const target: Target = "chain" in r.to ? { goto: `chain-${r.to.chain}` } : r.every ? { goto: `link-${r.to.link}` } : mark(r.to.link);
        return { ...(r.every ? { every: nth(r.every) } : {}), target };
      }),
    ),
  );
  return new Balancer(chains, "chain-0");
}

/**
 * The first window of `width` consecutive connections whose marks are not exactly `expected`
 * (mark → count; any other mark, unmarked included, must not occur), or undefined when every
 * window of the sequence is exact. One sliding count, so a long sequence costs one pass.
 */
export function inexactWindow(
  connections: Connection[],
  expected: Map<number | undefined, number>,
  width: number,
): { start: number; counts: Map<number | undefined, number> } | undefined {
  const counts = new Map<number | undefined, number>();
  let wrong = [...expected.values()].filter((n) => n !== 0).length;
  const add = (mark: number | undefined, by: number) => {
    const want = expected.get(mark) ?? 0;
    const before = counts.get(mark) ?? 0;
    counts.set(mark, before + by);
    wrong += Number(before + by !== want) - Number(before !== want);
  };
  for (let i = 0; i < connections.length; i++) {
    add(connections[i].mark, 1);
    if (i >= width) add(connections[i - width].mark, -1);
    if (i >= width - 1 && wrong !== 0) return { start: i - width + 1, counts };
  }
  return undefined;
}

/** Worst and mean rules walked per connection over `connections`. */
export function walkOf(connections: Connection[]): { worst: number; mean: number } {
  const total = connections.reduce((n, c) => n + c.walked, 0);
  return { worst: connections.reduce((n, c) => Math.max(n, c.walked), 0), mean: total / connections.length };
}

/** Each weight's connections per period of the split (the weights over their gcd; 0 = not live). */
export function periodShares(weights: number[]): number[] {
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  const g = weights.reduce(gcd, 0);
  return weights.map((w) => w / g);
}
