// Host rules above our hooks: which ones keep packets from multiwan's chains (drift reports them)
// and which ones do not (marks, logs, jumps into host chains that only return).
import { describe, expect, it } from "vitest";
import { shadowingRules } from "../../components/shadowing";

const PRE = { table: "mangle", chain: "PREROUTING", target: "MWAN-PRE" } as const;
const POST = { table: "nat", chain: "POSTROUTING", target: "MWAN-POST" } as const;
const HOOK = "-A PREROUTING -j MWAN-PRE";
const OWN = { interfaces: ["lan0", "wan1", "wan2"], lanNetworks: ["198.18.1.0/24"] };

/** iptables-save lines of a table: the host's chains and rules, our hook where the test puts it. */
const save = (...rules: string[]) => ["*mangle", ":PREROUTING ACCEPT [0:0]", ":HOST - [0:0]", ":MWAN-PRE - [0:0]", ...rules, "COMMIT"];

describe("shadowingRules", () => {
  it("reports verdicts above the hook, with or without matches", () => {
    const accept = "-A PREROUTING -j ACCEPT";
    const some = "-A PREROUTING -s 198.18.1.0/24 -p tcp -j DROP";
    expect(shadowingRules(save(accept, some, HOOK), PRE, OWN)).toEqual([accept, some]);
    expect(shadowingRules(save("-A PREROUTING -i lan0 -j RETURN", HOOK), PRE, OWN)).toEqual(["-A PREROUTING -i lan0 -j RETURN"]);
    const nat = "-A POSTROUTING -o wan1 -j MASQUERADE";
    expect(shadowingRules(["*nat", nat, "-A POSTROUTING -j MWAN-POST", "COMMIT"], POST, OWN)).toEqual([nat]);
  });

  it("ignores rules below the hook, rules that do not decide, and a missing hook", () => {
    const mark = "-A PREROUTING -i lan0 -j MARK --set-xmark 0x1/0xff";
    const log = '-A PREROUTING -m comment --comment "not -j ACCEPT" -j LOG --log-prefix "x -j DROP"';
    expect(shadowingRules(save(mark, log, "-A PREROUTING -p udp", HOOK, "-A PREROUTING -j ACCEPT"), PRE, OWN)).toEqual([]);
    expect(shadowingRules(save("-A PREROUTING -j ACCEPT"), PRE, OWN)).toEqual([]); // drift reports the hook missing
  });

  it("follows jumps into host chains: only a verdict inside (at any depth) shadows", () => {
    const jump = "-A PREROUTING -j HOST";
    const returns = ["-A HOST -s 198.51.100.0/24 -j RETURN", "-A HOST -j CONNMARK --save-mark"];
    expect(shadowingRules(save(jump, ...returns, HOOK), PRE, OWN)).toEqual([]);
    expect(shadowingRules(save(jump, ...returns, "-A HOST -g DEEP", "-A DEEP -p tcp -j ACCEPT", HOOK), PRE, OWN)).toEqual([jump]);
    expect(shadowingRules(save("-A PREROUTING -g HOST", ...returns, HOOK), PRE, OWN)).toEqual(["-A PREROUTING -g HOST"]);
  });

  it("ignores rules that cannot match the gateway's own traffic (other interfaces, other sources before NAT)", () => {
    const nat = (...rules: string[]) => ["*nat", ...rules, "-A POSTROUTING -j MWAN-POST", "COMMIT"];
    const docker = "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE";
    expect(shadowingRules(nat(docker), POST, OWN)).toEqual([]);
    const lan = "-A POSTROUTING -s 198.18.1.0/25 ! -o docker0 -j MASQUERADE";
    expect(shadowingRules(nat(lan), POST, OWN)).toEqual([lan]);
    expect(shadowingRules(save("-A PREROUTING -i docker0 -j ACCEPT", HOOK), PRE, OWN)).toEqual([]);
    const negated = "-A PREROUTING ! -i docker0 -j ACCEPT";
    const wildcard = "-A PREROUTING -i wan+ -j ACCEPT";
    expect(shadowingRules(save(negated, wildcard, HOOK), PRE, OWN)).toEqual([negated, wildcard]);
    // Before our marks, any source may be an inbound connection on an uplink: still reported.
    const inbound = "-A PREROUTING -s 172.17.0.0/16 -j ACCEPT";
    expect(shadowingRules(save(inbound, HOOK), PRE, OWN)).toEqual([inbound]);
  });
});
