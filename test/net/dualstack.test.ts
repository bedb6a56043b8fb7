// Dual stack on real netfilter: IPv6 next to IPv4 on the same links, balanced by the same weights
// with the same marks, translated per link (NPT onto the delegated prefix, or masquerade), and
// failing over together. The ISP routers forward IPv6 only from their link network or delegated
// prefix, so a wrong translation fails instead of passing unnoticed.
import { expect, it } from "vitest";
import { mapPrefix6, withLab, type ConnectionResult, type Lab } from "../../lab/lab";
import { deploy, labSite, lanConnections, markOf, unmarkedConnections, type Nat6 } from "../../lab/deploy";
import { allCarrying, healthState } from "../../lab/failover";
import { healthLog, waitFor } from "./health";
import { describeAsRoot } from "../helpers/root";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DEFAULTS = { interval: 0.5, timeout: 1, down: 3, up: 5 };
const MARK_MASK = 0xff00;
/** Link i's fwmark (1-based), shared by both families. */
const markOfLink = (i: number) => i << 8;

/** Where the server must see `host` (a LAN address) coming from through each link. */
function seenThrough(lab: Lab, nat6: Nat6, host: string): Record<string, string> {
  return Object.fromEntries(lab.links.map((l) => [l.name, nat6 === "npt" ? mapPrefix6(host, lab.lanInfo.network6!, l.prefix6!) : l.address6!]));
}

const failures = (results: ConnectionResult[]) => results.filter((r) => !r.ok).map((r) => r.error);
const percent = (share: number) => (share * 100).toFixed(1);
const split = (lab: Lab, results: ConnectionResult[]) => {
  const s = lab.shares(results);
  return lab.links.map((l) => `${l.name} ${percent(s[l.name])} %`).join(", ");
};

/** The gateway's IPv6 conntrack entries of LAN connections to the server with link `i`'s mark. */
async function onLink6(lab: Lab, i: number): Promise<string[]> {
  return (await lanConnections(lab, lab.serverAddress6)).filter((l) => (markOf(l) & MARK_MASK) === markOfLink(i));
}

describeAsRoot.each(["npt", "masquerade"] as const)("dual stack, two links 3:1, nat6 %s", (nat6) => {
  it("splits 2000 new IPv6 and 2000 IPv4 connections 75/25 ± 1 point, each IPv6 source translated for its link; long-lived IPv6 flows stay on theirs", async () => {
    await withLab({ links: 2, ipv6: true }, async (lab) => {
      const weights = [3, 1];
      await deploy(lab, labSite(lab, { weights, ipv6: { nat6 } }));
      const flows = await lab.longLived(8, { family: 6, intervalMs: 100, durationMs: 60_000 });
      const flowsFrom = Date.now();
      expect(flows.established).toBe(8);

      const t6 = Date.now();
      const v6 = await lab.openConnections(2000, { family: 6, concurrency: 20 });
      const t4 = Date.now();
      const v4 = await lab.openConnections(2000, { concurrency: 20 });
      const done = Date.now();
      // The flows exchange for 2.5 s at least, however fast the connections above went: about 25 messages each.
      await sleep(Math.max(0, 2500 - (Date.now() - flowsFrom)));
      const report = await flows.stop();

      const expected = seenThrough(lab, nat6, lab.lanInfo.clientAddress6!);
      const wrong6 = v6.filter((r) => r.ok && (r.link === null || r.seenAs !== expected[r.link]));
      const unmarked6 = await unmarkedConnections(lab, lab.serverAddress6);
      const unmarked4 = await unmarkedConnections(lab, lab.serverAddress);
      console.log(`nat6 ${nat6}: IPv6 ${split(lab, v6)} of ${v6.length} in ${t4 - t6} ms, ${failures(v6).length} failed, ${wrong6.length} with a wrong source, ${unmarked6} unmarked; ` +
        `IPv4 ${split(lab, v4)} of ${v4.length} in ${done - t4} ms, ${failures(v4).length} failed, ${unmarked4} unmarked; ` +
        `server saw ${[...new Set(v6.map((r) => r.seenAs))].join(" and ")}`);
      console.log(`nat6 ${nat6}: long-lived IPv6 flows: ${report.connections.map((c) => `${c.link} ${c.stable ? "stable" : `moved (${[...new Set(c.seen)].join(", ")})`} ${c.answered}/${c.sent}`).join("; ")}`);

      expect(failures(v6)).toEqual([]);
      expect(failures(v4)).toEqual([]);
      expect(wrong6.map((r) => `${r.seenAs} on ${r.link}`)).toEqual([]);
      for (const [results, label] of [[v6, "IPv6"], [v4, "IPv4"]] as const) {
        const shares = lab.shares(results);
        lab.links.forEach((l, i) => expect(Math.abs(shares[l.name] - weights[i] / 4), `${label} ${l.name}`).toBeLessThanOrEqual(0.01));
      }
      expect(unmarked6).toBe(0);
      expect(unmarked4).toBe(0);

      expect(report).toMatchObject({ errored: false, stalled: false });
      for (const c of report.connections) {
        expect(c.stable, `flow seen as ${[...new Set(c.seen)].join(", ")}`).toBe(true);
        expect(c.seen[0]).toBe(expected[c.link!]);
        expect(c.answered).toBeGreaterThanOrEqual(15);
        expect(c.answered).toBe(c.sent);
      }
      expect(new Set(report.connections.map((c) => c.link))).toEqual(new Set(["isp1", "isp2"]));
    });
  }, 180_000);
});

describeAsRoot("dual stack, NPT", () => {
  it("keeps each LAN host's interface identifier under every link's prefix, and answers an inbound connection to a link's prefix through that link", async () => {
    await withLab({ links: 2, ipv6: true }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1], ipv6: { nat6: "npt" } }));
      const { clientAddress6, extraClientAddresses6 } = lab.lanInfo;

      for (const host of [clientAddress6!, extraClientAddresses6![0], extraClientAddresses6![6]]) {
        const expected = seenThrough(lab, "npt", host);
        const results = await lab.openConnections(40, { family: 6, src: host });
        const seen = [...new Set(results.map((r) => `${r.seenAs} (${r.link})`))];
        console.log(`LAN host ${host}: seen as ${seen.join(", ")}; ${split(lab, results)}`);
        expect(failures(results)).toEqual([]);
        expect(results.filter((r) => r.seenAs !== expected[r.link!])).toEqual([]);
        expect(lab.shares(results)).toEqual({ isp1: 0.5, isp2: 0.5 });
      }

      const listener = await lab.listen("lan", { port: 8080, address: clientAddress6! });
      for (const [i, link] of lab.links.entries()) {
        const dst = mapPrefix6(clientAddress6!, lab.lanInfo.network6!, link.prefix6!);
        const before = await Promise.all(lab.links.map((l) => lab.forwarded6(l.name)));
        const inbound = await lab.connectFromServer({ dst, port: 8080 });
        const after = await Promise.all(lab.links.map((l) => lab.forwarded6(l.name)));
        const entries = (await lab.exec("gw", ["conntrack", "-L", "-f", "ipv6", "-p", "tcp", "-d", dst, "--dport", "8080"], { check: true })).stdout
          .split("\n").filter((l) => l.includes("mark="));
        const replies = after.map((a, j) => a.fromPrefix - before[j].fromPrefix);
        console.log(`inbound to ${dst}: ${inbound.ok ? "answered" : `failed (${inbound.error})`}, the client saw ${inbound.seenAs}; ` +
          `packets from the delegated prefixes out of ${lab.links.map((l, j) => `${l.name} ${replies[j]}`).join(", ")}; conntrack: ${entries.join(" | ")}`);
        expect(inbound).toMatchObject({ ok: true, seenAs: lab.serverAddress6 });
        expect(entries.length).toBe(1);
        expect(markOf(entries[0]) & MARK_MASK).toBe(markOfLink(i + 1));
        // The reply direction is the LAN host's own: NPT undid the mapping on the way in.
        expect(entries[0]).toContain(`src=${clientAddress6} dst=${lab.serverAddress6}`);
        // SYN-ACK, greeting, echo at least: out of this link, under its prefix, and nothing out of the other.
        expect(replies[i]).toBeGreaterThanOrEqual(3);
        expect(replies.filter((_, j) => j !== i)).toEqual([0]);
      }
      expect((await listener.stop()).peers).toEqual([lab.serverAddress6, lab.serverAddress6]);
    });
  }, 60_000);
});

describeAsRoot("dual stack, nat6 none", () => {
  it("sends the hosts numbered from link 2's prefix out of link 2 untranslated, and balances the LAN's own network around them", async () => {
    await withLab({ links: 2, ipv6: { lanFrom: ["isp2"] } }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [3, 1], ipv6: { nat6: ["npt", "none"] } }));
      const [link1, link2] = lab.links;
      const provider = lab.lanInfo.provider6![0];

      const pinned = await lab.openConnections(200, { family: 6, src: provider.clientAddress });
      const own = await lab.openConnections(400, { family: 6 });
      const owned = { isp1: mapPrefix6(lab.lanInfo.clientAddress6!, lab.lanInfo.network6!, link1.prefix6!), isp2: link2.address6! };
      const wrong = own.filter((r) => r.ok && r.seenAs !== owned[r.link as "isp1" | "isp2"]);
      console.log(`nat6 none: ${provider.clientAddress} seen as ${[...new Set(pinned.map((r) => r.seenAs))].join(", ")}, ${split(lab, pinned)}, ${failures(pinned).length} failed; ` +
        `${lab.lanInfo.clientAddress6}: ${split(lab, own)}, seen as ${[...new Set(own.map((r) => r.seenAs))].join(" and ")}, ${failures(own).length} failed`);
      expect(failures(pinned)).toEqual([]);
      expect(pinned.every((r) => r.seenAs === provider.clientAddress && r.link === "isp2")).toBe(true);
      expect(failures(own)).toEqual([]);
      expect(wrong.map((r) => `${r.seenAs} on ${r.link}`)).toEqual([]);
      expect(Math.abs(lab.shares(own).isp1 - 0.75)).toBeLessThanOrEqual(0.01);

      // Inbound to the provider-numbered host: routed to the LAN as it is, answered through link 2.
      const listener = await lab.listen("lan", { port: 8080, address: provider.clientAddress });
      const inbound = await lab.connectFromServer({ dst: provider.clientAddress, port: 8080 });
      console.log(`nat6 none: inbound to ${provider.clientAddress}: ${inbound.ok ? "answered" : `failed (${inbound.error})`}`);
      expect(inbound).toMatchObject({ ok: true, seenAs: lab.serverAddress6 });
      expect((await listener.stop()).peers).toEqual([lab.serverAddress6]);
    });
  }, 60_000);
});

describeAsRoot("dual stack, main table and next hops", () => {
  it("sends balance.exclude6 destinations through the main table only, and balances over link-local (fe80::) next hops that the probes find alive", async () => {
    await withLab({ links: 2, ipv6: true }, async (lab) => {
      const excluded = lab.serverAddresses6.secondary;
      await deploy(lab, labSite(lab, {
        weights: [1, 3], health: DEFAULTS, balance: { exclude6: [`${excluded}/128`] }, ipv6: { nat6: "masquerade", nextHop: "link-local" },
      }), { daemon: true });
      await allCarrying(lab);
      const toExcluded = await lab.openConnections(200, { family: 6, dst: excluded });
      const toBalanced = await lab.openConnections(400, { family: 6 });
      const status = healthState(lab)!.links.map((l) => `${l.name} ${l.status}`).join(", ");
      console.log(`exclude6: ${split(lab, toExcluded)} to ${excluded} (${failures(toExcluded).length} failed); balanced over fe80:: next hops: ${split(lab, toBalanced)} (${failures(toBalanced).length} failed); links ${status}`);
      expect(toExcluded.every((r) => r.ok && r.link === "isp1")).toBe(true); // the main table's default: link 1
      expect(failures(toBalanced)).toEqual([]);
      expect(lab.shares(toBalanced)).toEqual({ isp1: 0.25, isp2: 0.75 });
      expect(healthState(lab)!.links.map((l) => l.status)).toEqual(["up", "up"]);
    });
  }, 60_000);

  it("balances the gateway's own connections of both families with balance.local, each leaving from its link's address; a socket bound to link 2's address stays on link 2", async () => {
    await withLab({ links: 2, ipv6: true }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [3, 1], health: DEFAULTS, balance: { local: true }, ipv6: { nat6: "npt" } }), { daemon: true });
      await allCarrying(lab);
      const v6 = await lab.openConnections(400, { family: 6, from: lab.ns.gw });
      const v4 = await lab.openConnections(400, { from: lab.ns.gw });
      const wrong6 = v6.filter((r) => r.ok && r.seenAs !== lab.links.find((l) => l.name === r.link)?.address6);
      console.log(`balance.local: the gateway's own IPv6 ${split(lab, v6)} (${failures(v6).length} failed, ${wrong6.length} not from their link's address6), IPv4 ${split(lab, v4)} (${failures(v4).length} failed)`);
      expect(failures(v6)).toEqual([]);
      expect(failures(v4)).toEqual([]);
      expect(wrong6).toEqual([]);
      expect(lab.shares(v6)).toEqual({ isp1: 0.75, isp2: 0.25 });
      expect(lab.shares(v4)).toEqual({ isp1: 0.75, isp2: 0.25 });

      const isp2 = lab.links[1];
      const bound6 = await lab.openConnections(100, { family: 6, from: lab.ns.gw, src: isp2.address6 });
      const bound4 = await lab.openConnections(100, { from: lab.ns.gw, src: isp2.address });
      console.log(`balance.local: bound to isp2's addresses: IPv6 ${split(lab, bound6)} (${failures(bound6).length} failed), IPv4 ${split(lab, bound4)} (${failures(bound4).length} failed)`);
      expect([...bound6, ...bound4].every((r) => r.ok && r.link === "isp2")).toBe(true);
    });
  }, 60_000);
});

describeAsRoot("dual stack failover", () => {
  it("IPv6 failing alone upstream takes link 1 down (reliability counts each family; passive detection's burst too), and both families go on over link 2", async () => {
    await withLab({ links: 2, ipv6: true }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1], health: { ...DEFAULTS, flushConntrack: true }, ipv6: { nat6: "npt" } }), { daemon: true });
      await allCarrying(lab);
      const breakAt = Date.now();
      await lab.breakUplink("isp1", { family: 6 });
      // New IPv6 connections at 20/s from the break on: half of them go unanswered on isp1.
      const during = lab.openConnections(40, { family: 6, ratePerSec: 20, concurrency: 40, connectTimeoutMs: 1000, durationLimitMs: 10_000 });
      const isp1 = () => healthState(lab)?.links.find((l) => l.name === "isp1");
      await waitFor("isp1 down", () => isp1()?.status === "down", 6000);
      const downAfterMs = isp1()!.since - breakAt;
      await during;
      const log = await healthLog(lab);
      const [v6, v4] = await Promise.all([lab.openConnections(200, { family: 6 }), lab.openConnections(200)]);
      await lab.restoreUplink("isp1", { family: 6 });
      const backMs = await waitFor("isp1 back", () => isp1()?.status === "up", 10_000);
      await allCarrying(lab);
      const after = await lab.openConnections(200, { family: 6 });
      console.log(`IPv6 alone broken: isp1 down ${downAfterMs} ms after the break (${/link isp1 down \(([^)]*)\)/.exec(log)?.[1]}); then IPv6 ${split(lab, v6)} (${failures(v6).length} failed), IPv4 ${split(lab, v4)} (${failures(v4).length} failed); ` +
        `up again ${backMs} ms after the restore, then IPv6 ${split(lab, after)} (${failures(after).length} failed)`);
      // Passive detection's burst finds the IPv6 target silent: well before three probe rounds.
      expect(log).toMatch(/link isp1 down \(passive: .* 1 IPv4 and 0 IPv6 of 1 \+ 1 needed targets answered a burst/);
      expect(downAfterMs).toBeLessThanOrEqual(1500);
      expect(v6.every((r) => r.ok && r.link === "isp2")).toBe(true);
      expect(v4.every((r) => r.ok && r.link === "isp2")).toBe(true);
      expect(failures(after)).toEqual([]);
      expect(lab.shares(after)).toEqual({ isp1: 0.5, isp2: 0.5 });
    });
  }, 60_000);


  it("when link 1 breaks upstream, patient IPv6 and IPv4 clients lose no connection, and no IPv6 LAN connection keeps link 1's mark", async () => {
    await withLab({ links: 2, ipv6: true }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1], health: { ...DEFAULTS, flushConntrack: true }, ipv6: { nat6: "npt" } }), { daemon: true });
      await waitFor("the daemon's first state", () => healthState(lab) !== undefined, 5000);
      await allCarrying(lab);

      // Clients that wait like real ones: 5 s connect timeout, the kernel's SYN retries.
      const [beforeMs, outageMs, afterMs] = [2000, 8000, 2000];
      const total = beforeMs + outageMs + afterMs;
      const patient = { ratePerSec: 20, concurrency: 200, connectTimeoutMs: 5000, durationLimitMs: total + 5000 };
      const v6 = lab.openConnections((total / 1000) * 20, { ...patient, family: 6 });
      const v4 = lab.openConnections((total / 1000) * 20, patient);
      await sleep(beforeMs);
      const breakAt = Date.now();
      await lab.breakUplink("isp1");
      const isp1 = () => healthState(lab)?.links.find((l) => l.name === "isp1");
      await waitFor("isp1 down", () => isp1()?.status === "down", 6000);
      const downAfterMs = isp1()!.since - breakAt;
      // The round that took the link down flushed its connections; nothing new is marked for it.
      await sleep(1000);
      const stale6 = await onLink6(lab, 1);
      const stale4 = (await lanConnections(lab, lab.serverAddress)).filter((l) => (markOf(l) & MARK_MASK) === markOfLink(1));
      const live6 = (await lanConnections(lab, lab.serverAddress6)).length;
      await sleep(Math.max(0, breakAt + outageMs - Date.now()));
      const staleAtRestore6 = await onLink6(lab, 1);
      const restoreAt = Date.now();
      await lab.restoreUplink("isp1");
      const [r6, r4] = await Promise.all([v6, v4]);

      const during = (rs: ConnectionResult[]) => rs.filter((r) => r.startedAt > breakAt + downAfterMs + 1000 && r.startedAt < restoreAt);
      const slowest = (rs: ConnectionResult[]) => Math.max(...rs.filter((r) => r.startedAt >= breakAt - 5000 && r.startedAt < breakAt + downAfterMs).map((r) => r.ms));
      console.log(`failover: isp1 down ${downAfterMs} ms after the break; IPv6 ${failures(r6).length} of ${r6.length} failed (slowest around the break ${slowest(r6)} ms), ` +
        `IPv4 ${failures(r4).length} of ${r4.length} failed (slowest ${slowest(r4)} ms); 1 s after down: ${stale6.length} IPv6 and ${stale4.length} IPv4 LAN entries with isp1's mark ` +
        `(of ${live6} IPv6 LAN entries), ${staleAtRestore6.length} IPv6 at the restore; during the outage IPv6 ${split(lab, during(r6))}, IPv4 ${split(lab, during(r4))}`);
      if (stale6.length) console.log(stale6.slice(0, 5).join("\n"));

      expect(failures(r6)).toEqual([]);
      expect(failures(r4)).toEqual([]);
      expect(stale6).toEqual([]);
      expect(staleAtRestore6).toEqual([]);
      expect(stale4).toEqual([]);
      for (const rs of [during(r6), during(r4)]) {
        expect(rs.length).toBeGreaterThan(50);
        expect(rs.every((r) => r.link === "isp2")).toBe(true);
      }
      expect(healthLog(lab)).toMatch(/link isp1 down/);
    });
  }, 90_000);
});
