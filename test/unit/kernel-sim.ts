// What the kernel does with the balancing rules, simulated: iptables-restore --noflush of rendered
// restore text into the mangle table, then new connections walked through MWAN-CLASSIFY or
// MWAN-BALANCE with each nth counter of xt_statistic and the header matches a connection's first
// packet meets. The split's own accounting (planSplit's walk) is checked against it.
import { parseIpv4 } from "../../components/ipv4";
import type { Split } from "../../components/split";

/** What the walked rules look at in a new connection's first packet; a rule that needs an absent field fails the test. */
export interface Packet {
  source?: string;
  destination?: string;
  protocol?: "tcp" | "udp" | "icmp" | "sctp";
  dport?: number;
  /** The interface it arrived on. */
  in?: string;
  /** Addressed to the gateway itself (`-m addrtype --dst-type LOCAL`). */
  local?: boolean;
}

type Target = { goto: string } | { mark: number; mask: number } | "return";
type Test = (p: Packet) => boolean;

interface Rule {
  /** The ip header part (-s -d -i -p): the kernel checks it before any -m match. */
  header: Test[];
  /** The -m matches in their order; one that fails stops the rest (an nth counter is not stepped). */
  matches: Test[];
  target: Target;
}

/** The only chains the simulation walks: classification, the splits' and the links' mark chains. */
const WALKED = /^MWAN-(CLASSIFY|SELECT|BALANCE(-P\d+)?(-\d+)?|MARK-\d+)$/;

function nth(every: number): Test {
  // xt_statistic: the counter starts at every−1−packet and a packet matches when it wraps to 0,
  // so with --packet 0 the first packet reaching the rule matches.
  let count = every - 1;
  return () => {
    count = count === every - 1 ? 0 : count + 1;
    return count === 0;
  };
}

function field<K extends keyof Packet>(p: Packet, key: K): NonNullable<Packet[K]> {
  if (p[key] === undefined) throw new Error(`a rule looks at the packet's ${key}, which the test did not give`);
  return p[key]!;
}

/** `-s`/`-d` operand: an address, `a.b.c.d/len` or `a.b.c.d/w.x.y.z` (the sticky masks). */
function addressTest(operand: string, key: "source" | "destination"): Test {
  const [address, mask = "32"] = operand.split("/");
  const bits = mask.includes(".") ? parseIpv4(mask) : Number(mask) === 0 ? 0 : (0xffffffff << (32 - Number(mask))) >>> 0;
  const value = parseIpv4(address);
  // iptables would clear them and save another text than the one rendered.
  if ((value & ~bits) >>> 0) throw new Error(`-${key[0]} ${operand}: bits outside the mask`);
  return (p) => ((parseIpv4(field(p, key)) & bits) >>> 0) === value;
}

function portsTest(list: string): Test {
  const ranges = list.split(",").map((item) => item.split(":").map(Number)).map(([low, high = low]) => [low, high]);
  return (p) => ranges.some(([low, high]) => field(p, "dport") >= low && field(p, "dport") <= high);
}

/** One rule text as the renderer prints it in a walked chain; a shape not modelled here fails the test. */
function parseRule(chain: string, text: string): Rule {
  const words = text.split(" ");
  const fail = (): never => {
    throw new Error(`${chain}: a rule the simulation does not model: ${text}`);
  };
  const next = () => words.shift() ?? fail();
  const rule: Omit<Rule, "target"> = { header: [], matches: [] };
  let protocol: string | undefined;
  for (;;) {
    const option = next();
    if (option === "-s" || option === "-d") rule.header.push(addressTest(next(), option === "-s" ? "source" : "destination"));
    else if (option === "-i") {
      const name = next();
      rule.header.push((p) => field(p, "in") === name);
    } else if (option === "-p") {
      const name = (protocol = next());
      rule.header.push((p) => field(p, "protocol") === name);
    } else if (option === "-m") {
      const module = next();
      const args = `${module} ${next()} ${next()}`;
      let m: RegExpExecArray | null;
      // iptables refuses multiport without a protocol that has ports.
      if ((m = /^multiport --dports ([0-9:,]+)$/.exec(args)) && ["tcp", "udp", "sctp"].includes(protocol ?? "")) rule.matches.push(portsTest(m[1]));
      else if (args === "addrtype --dst-type LOCAL") rule.matches.push((p) => p.local === true);
      else if ((m = /^statistic --mode nth$/.exec(args)) && next() === "--every") {
        const every = Number(next());
        if (next() !== "--packet" || next() !== "0" || !(every >= 2)) fail();
        rule.matches.push(nth(every));
      } else fail();
    } else if (option === "-g") {
      const target = { goto: next() };
      return words.length ? fail() : { ...rule, target };
    } else if (option === "-j") {
      const jump = words.join(" ");
      const mark = /^MARK --set-xmark (0x[0-9a-f]+)\/(0x[0-9a-f]+)$/.exec(jump);
      if (jump === "RETURN") return { ...rule, target: "return" };
      return mark ? { ...rule, target: { mark: Number(mark[1]), mask: Number(mark[2]) } } : fail();
    } else fail();
  }
}

export interface Connection {
  /** The packet mark after the walk; undefined when no MARK rule was reached. */
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
        if (typeof r.target === "object" && "goto" in r.target && !chains.has(r.target.goto)) throw new Error(`-g out of the split's and the classification's chains: ${r.target.goto}`);
  }

  /**
   * One connection entering the entry chain from MWAN-PRE (by -j), its mark byte clear (MWAN-PRE
   * returns on a mark). Every jump below is a -g, so a RETURN or the end of any chain ends the walk.
   */
  connect(packet: Packet = {}): Connection {
    let mark: number | undefined;
    let walked = 0;
    const visited = new Set<string>();
    let chain = this.entry;
    let rules = this.chains.get(chain)!;
    for (let i = 0; i < rules.length; ) {
      const r = rules[i];
      walked++;
      if (!r.header.every((t) => t(packet)) || !r.matches.every((t) => t(packet))) {
        i++;
        continue;
      }
      if (r.target === "return") break;
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
    return { mark, walked };
  }

  /** `connections` new connections, the i-th with `packetOf(i)`. */
  feed(connections: number, packetOf: (i: number) => Packet = () => ({})): Connection[] {
    return Array.from({ length: connections }, (_, i) => this.connect(packetOf(i)));
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

  /** The rules as the kernel runs them now from `entry`: every walked chain's rules with fresh counters. */
  balancer(entry = "MWAN-BALANCE"): Balancer {
    const walked = [...this.chains].filter(([name]) => WALKED.test(name));
    return new Balancer(new Map(walked.map(([name, rules]) => [name, rules.map((r) => parseRule(name, r))])), entry);
  }
}

/**
 * planSplit's chains as the kernel would run them, without rendering: link i is marked i+1, through
 * a mark chain of its own, or in place by a chain's last, unconditional rule.
 */
export function splitBalancer(split: Split, links: number): Balancer {
  const chains = new Map<string, Rule[]>();
  const mark = (link: number): Target => ({ mark: link + 1, mask: 0xff });
  for (let link = 0; link < links; link++) chains.set(`link-${link}`, [{ header: [], matches: [], target: mark(link) }]);
  split.chains.forEach((c, id) =>
    chains.set(
      `chain-${id}`,
      c.rules.map((r) => {
        const target: Target = "chain" in r.to ? { goto: `chain-${r.to.chain}` } : r.every ? { goto: `link-${r.to.link}` } : mark(r.to.link);
        return { header: [], matches: r.every ? [nth(r.every)] : [], target };
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
