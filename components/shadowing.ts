// Host rules that shadow multiwan's hooks: a rule placed above one of our jumps in a built-in chain
// (e.g. `iptables -t mangle -I PREROUTING 1 -j ACCEPT`) whose verdict ends that chain for the
// packets it matches, so they never reach our chain: unbalanced, unmarked or not NATed.
import { parseCidr } from "./ipv4";
import type { Hook } from "./plan";

/** What multiwan's traffic looks like on this gateway: its LAN and uplink interfaces, its LAN. */
export interface OwnTraffic {
  interfaces: string[];
  lanNetworks: string[];
}

/** A non-negated `-X value` match of an iptables-save rule (`! -o docker0` is not one). */
const match = (rule: string, option: string) => new RegExp(`(?:^|[^!] )${option} (\\S+)`).exec(rule)?.[1];

/**
 * Whether a rule can see multiwan's packets at all: not when it only matches an interface that is
 * none of the gateway's (`-i docker0`), nor, before our NAT, sources outside the LAN (Docker's
 * `-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE`): our NAT only translates the LAN's connections.
 */
function touches(rule: string, hook: Hook, own: OwnTraffic): boolean {
  for (const option of ["-i", "-o"]) {
    const ifname = match(rule, option);
    if (ifname !== undefined && !ifname.includes("+") && !own.interfaces.includes(ifname)) return false;
  }
  const source = match(rule, "-s");
  if (hook.table === "nat" && source !== undefined && /^[0-9./]+$/.test(source)) {
    const s = parseCidr(source);
    return own.lanNetworks.some((n) => {
      const lan = parseCidr(n);
      return s.network <= lan.broadcast && lan.network <= s.broadcast;
    });
  }
  return true;
}

/** Targets that end a packet's walk through the chain (RETURN in a built-in chain: its policy). */
const VERDICTS = new Set(["ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "NFQUEUE", "MASQUERADE", "SNAT", "DNAT", "REDIRECT", "NETMAP", "TPROXY"]);

/** `-j X` / `-g X` of an iptables-save rule, quoted match arguments (comments) skipped. */
function targetOf(rule: string): { goto: boolean; target: string } | undefined {
  const m = / -([jg]) (\S+)/.exec(rule.replace(/"(?:[^"\\]|\\.)*"/g, '""'));
  return m ? { goto: m[1] === "g", target: m[2] } : undefined;
}

/** Chain → its rules in order, from one table's iptables-save lines. */
function rulesByChain(lines: string[]): Map<string, string[]> {
  const chains = new Map<string, string[]>();
  for (const line of lines) {
    const chain = /^-A (\S+) /.exec(line)?.[1];
    if (chain) chains.set(chain, [...(chains.get(chain) ?? []), line]);
  }
  return chains;
}

/**
 * Whether a rule can end the walk of the built-in chain (`top`) or of the host chain it is in: a
 * verdict, a goto from the built-in chain, or a jump into a host chain that can, at any depth.
 * Inside a host chain RETURN only returns, and a goto goes on to the built-in chain afterwards.
 */
function decides(rule: string, chains: Map<string, string[]>, seen: Set<string>, top: boolean): boolean {
  const t = targetOf(rule);
  if (!t || t.target.startsWith("MWAN-")) return false;
  if (VERDICTS.has(t.target)) return top || t.target !== "RETURN";
  if (t.goto && top) return true;
  if (seen.has(t.target)) return false;
  seen.add(t.target);
  return (chains.get(t.target) ?? []).some((r) => decides(r, chains, seen, false));
}

/** The rules above `hook`'s jump in one table's live iptables-save lines that can keep our packets from it. */
export function shadowingRules(lines: string[], hook: Hook, own: OwnTraffic): string[] {
  const chains = rulesByChain(lines);
  const rules = chains.get(hook.chain) ?? [];
  const at = rules.indexOf(`-A ${hook.chain} -j ${hook.target}`);
  return at < 0 ? [] : rules.slice(0, at).filter((r) => touches(r, hook, own) && decides(r, chains, new Set(), true));
}
