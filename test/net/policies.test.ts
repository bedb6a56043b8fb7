// Traffic policies on real links: a port pinned to one link while the rest is split by weight,
// what a pinned port gets when its link breaks, and LAN addresses kept on one link each.
import { expect, it } from "vitest";
import { withLab, type ConnectionResult, type Lab } from "../../lab/lab";
import { deploy, labSite } from "../../lab/deploy";
import { healthState } from "../../lab/failover";
import { waitFor } from "./health";
import { describeAsRoot } from "../helpers/root";

const FAST = { interval: 0.1, timeout: 0.25, down: 3, up: 10 };
const SIP = 5060;

const waitVariant = (lab: Lab, key: string) => waitFor(`variant ${key}`, () => healthState(lab)?.variant === key, 5000);
const failures = (results: ConnectionResult[]) => results.filter((r) => !r.ok).map((r) => r.error);
const linksOf = (results: ConnectionResult[]) => new Set(results.map((r) => r.link));

/** ICMP destination-unreachable messages a namespace has received (its /proc/net/snmp). */
async function destUnreachables(lab: Lab, ns: string): Promise<number> {
  const lines = (await lab.exec(ns, ["cat", "/proc/net/snmp"], { check: true })).stdout.split("\n").filter((l) => l.startsWith("Icmp: "));
  const [names, values] = lines.map((l) => l.split(" "));
  return Number(values[names.indexOf("InDestUnreachs")]);
}

describeAsRoot("a policy pinning port 5060 (udp, tcp) to isp2 while 3:1 applies to the rest", () => {
  for (const whenDown of ["default", "unreachable"] as const) {
    it(`takes all of 5060 to isp2; with isp2 broken and whenDown ${whenDown}, ${whenDown === "default" ? "5060 falls to the default (isp1) and works" : "5060 is refused at once"}, the rest on isp1`, async () => {
      await withLab({ links: 2, tcpPorts: [80, SIP], udpPorts: [SIP] }, async (lab) => {
        const policy = { name: "sip", match: { ports: [SIP] }, links: ["isp2"], whenDown };
        await deploy(lab, labSite(lab, { weights: [3, 1], health: FAST, balance: { policies: [policy] } }), { daemon: true });
        await waitVariant(lab, "isp1+isp2");
        // At once: the pinned connections must not take turns in the default split's counters.
        const [udp, tcp, rest] = await Promise.all([
          lab.openConnections(200, { protocol: "udp", port: SIP }),
          lab.openConnections(200, { port: SIP }),
          lab.openConnections(400, { port: 80 }),
        ]);
        expect([...failures(udp), ...failures(tcp), ...failures(rest)]).toEqual([]);
        console.log(`policy up (${whenDown}): udp/${SIP} ${JSON.stringify(lab.shares(udp))}, tcp/${SIP} ${JSON.stringify(lab.shares(tcp))}, the rest ${JSON.stringify(lab.shares(rest))}`);
        expect([lab.shares(udp), lab.shares(tcp)]).toEqual([{ isp1: 0, isp2: 1 }, { isp1: 0, isp2: 1 }]);
        expect(lab.shares(rest)).toEqual({ isp1: 0.75, isp2: 0.25 });

        await lab.breakUplink("isp2");
        await waitVariant(lab, "isp1");
        const restDown = await lab.openConnections(200, { port: 80 });
        expect(failures(restDown)).toEqual([]);
        expect(linksOf(restDown)).toEqual(new Set(["isp1"]));
        if (whenDown === "default") {
          const [udpDown, tcpDown] = await Promise.all([lab.openConnections(100, { protocol: "udp", port: SIP }), lab.openConnections(100, { port: SIP })]);
          expect([...failures(udpDown), ...failures(tcpDown)]).toEqual([]);
          expect([linksOf(udpDown), linksOf(tcpDown)]).toEqual([new Set(["isp1"]), new Set(["isp1"])]);
        } else {
          // One attempt per client address: the kernel sends at most a burst of 5 unreachables to one host.
          const sources = [lab.lanInfo.clientAddress, ...lab.lanInfo.extraClientAddresses];
          const refused = { sources, concurrency: sources.length, port: SIP };
          const icmpBefore = await destUnreachables(lab, "lan");
          const tcpDown = await lab.openConnections(sources.length, { ...refused, connectTimeoutMs: 2000 });
          // `prohibit` (not `unreachable`, whose host-unreachable a UDP socket ignores): connected UDP fails at once too.
          const udpDown = await lab.openConnections(sources.length, { ...refused, protocol: "udp", connectTimeoutMs: 500 });
          const icmp = (await destUnreachables(lab, "lan")) - icmpBefore;
          console.log(`policy down (unreachable): tcp/${SIP} ${JSON.stringify(tcpDown.map((r) => `${r.error} ${r.ms} ms`))}; udp/${SIP} ${JSON.stringify(udpDown.map((r) => `${r.error} ${r.ms} ms`))}; the client got ${icmp} ICMP unreachables`);
          expect(tcpDown.map((r) => r.error)).toEqual(sources.map(() => "EHOSTUNREACH"));
          expect(Math.max(...tcpDown.map((r) => r.ms))).toBeLessThan(200);
          expect(udpDown.map((r) => r.error)).toEqual(sources.map(() => "EHOSTUNREACH"));
          expect(Math.max(...udpDown.map((r) => r.ms))).toBeLessThan(200);
          expect(icmp).toBe(2 * sources.length);
        }

        await lab.restoreUplink("isp2");
        await waitVariant(lab, "isp1+isp2");
        // From an address with no UDP flow on isp1 yet: a new socket may get the source port of
        // one still in conntrack, and continue that flow where it is.
        const udpBack = await lab.openConnections(100, { protocol: "udp", port: SIP, src: lab.lanInfo.extraClientAddresses[0] });
        expect(failures(udpBack)).toEqual([]);
        expect(linksOf(udpBack)).toEqual(new Set(["isp2"]));
      });
    }, 60_000);
  }
});

/** Each source address's links over `results`, and how many of its connections succeeded. */
function bySource(results: ConnectionResult[]): Map<string, { links: Set<string | null>; ok: number }> {
  const m = new Map<string, { links: Set<string | null>; ok: number }>();
  for (const r of results) {
    const entry = m.get(r.src!) ?? { links: new Set(), ok: 0 };
    entry.links.add(r.link);
    if (r.ok) entry.ok++;
    m.set(r.src!, entry);
  }
  return m;
}

describeAsRoot.each([
  { links: 2, weights: [3, 1], broken: "isp2" },
  { links: 3, weights: [2, 1, 1], broken: "isp1" },
])("sticky by source over $links links weighted $weights", ({ links, weights, broken }) => {
  const ADDRESSES = 60;
  const EACH = 20;

  it(`keeps each of ${ADDRESSES} LAN addresses on one link, spread by weight; ${broken} broken moves only its addresses, and they come back`, async () => {
    await withLab({ links }, async (lab) => {
      const policy = { name: "by-source", match: { sources: [lab.lanInfo.network] }, sticky: "source" };
      await deploy(lab, labSite(lab, { weights, health: FAST, balance: { policies: [policy] } }), { daemon: true });
      const sources = await lab.addClientAddresses(ADDRESSES);
      const names = lab.links.map((l) => l.name);
      /** Every address's one link, after checking that all its connections succeeded on it. */
      const placement = async (variant: string) => {
        await waitVariant(lab, variant);
        const results = await lab.openConnections(ADDRESSES * EACH, { sources });
        expect(failures(results)).toEqual([]);
        const seen = bySource(results);
        expect([...seen.values()].filter((s) => s.links.size !== 1 || s.ok !== EACH)).toEqual([]);
        return new Map([...seen].map(([src, s]) => [src, [...s.links][0]!]));
      };
      const count = (p: Map<string, string>) => Object.fromEntries(names.map((n) => [n, [...p.values()].filter((l) => l === n).length]));

      const before = await placement(names.join("+"));
      const total = weights.reduce((a, b) => a + b, 0);
      console.log(`sticky ${weights.join(":")}: addresses per link ${JSON.stringify(count(before))} (${ADDRESSES} × ${EACH} connections)`);
      names.forEach((n, i) => expect(Math.abs(count(before)[n] - (ADDRESSES * weights[i]) / total)).toBeLessThanOrEqual(6));

      await lab.breakUplink(broken);
      const during = await placement(names.filter((n) => n !== broken).join("+"));
      const moved = sources.filter((s) => during.get(s) !== before.get(s));
      console.log(`sticky ${weights.join(":")}, ${broken} broken: addresses per link ${JSON.stringify(count(during))}, ${moved.length} moved`);
      // Exactly the dead link's: those on a live link stay where they were.
      expect(moved).toEqual(sources.filter((s) => before.get(s) === broken));
      // The dead link's addresses are shared by the other links of its tier, each taking some.
      const takers = new Set(moved.map((s) => during.get(s)));
      expect(takers).toEqual(new Set(names.filter((n) => n !== broken)));

      await lab.restoreUplink(broken);
      const after = await placement(names.join("+"));
      expect(sources.filter((s) => after.get(s) !== before.get(s))).toEqual([]);
    });
  }, 60_000);
});
