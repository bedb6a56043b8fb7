// Host rules that shadow multiwan's hooks: a rule placed above one of our jumps in a built-in chain
// (e.g. `iptables -t mangle -I PREROUTING 1 -j ACCEPT`) whose verdict ends that chain for the
// packets it matches, so they never reach our chain: unbalanced, unmarked or not NATed.
import type { Hook } from "./plan";

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

/** The rules above `hook`'s jump in one table's live iptables-save lines that can keep packets from it. */
export function shadowingRules(lines: string[], hook: Hook): string[] {
  const chains = rulesByChain(lines);
  const rules = chains.get(hook.chain) ?? [];
  const at = rules.indexOf(`-A ${hook.chain} -j ${hook.target}`);
  return at < 0 ? [] : rules.slice(0, at).filter((r) => decides(r, chains, new Set(), true));
}
