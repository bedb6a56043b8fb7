// The lab itself, without the product: the gateway is configured by hand in each test, to show
// that the lab fails what the internet would fail and passes what it would pass.
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { isRunning, run } from "../../lab/exec";
import { withLab, type Lab } from "../../lab/lab";
import {
  earlySysctls, format6, inPrefix6, ip6Routes, ipBatches, mapPrefix6, MAX_LINKS, parse6, planTopology, vethLines,
} from "../../lab/topology";
import { describeAsRoot } from "../helpers/root";

const gw = (lab: Lab, ...argv: string[]) => lab.exec("gw", argv, { check: true });
const enableForwarding = (lab: Lab) => gw(lab, "sysctl", "-qw", "net.ipv4.ip_forward=1");
const masquerade = (lab: Lab, wan: string) => gw(lab, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j", "MASQUERADE");

/** Packets the ISP router dropped for a spoofed source (its BCP38 rule's counter). */
async function bcp38Drops(lab: Lab, link: string): Promise<number> {
  const { stdout } = await lab.exec(link, ["iptables", "-L", "FORWARD", "-v", "-x", "-n"], { check: true });
  const rule = stdout.split("\n").find((l) => l.includes("cpe0") && l.includes("!"));
  return Number(rule?.trim().split(/\s+/)[0] ?? NaN);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("lab plan", () => {
  const plan = planTopology("mwt-abcdef", MAX_LINKS, 255);
  const toInt = (a: string) => a.split(".").reduce((n, o) => n * 256 + Number(o), 0);
  const inRange = (a: string, cidr: string) => {
    const [base, len] = cidr.split("/");
    const size = 2 ** (32 - Number(len));
    return Math.floor(toInt(a) / size) === Math.floor(toInt(base) / size);
  };

  it("uses only documentation and benchmark addresses", () => {
    const allowed = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15"];
    const text = [...ipBatches(plan).values()].flat().join("\n");
    const addresses = text.match(/\d+\.\d+\.\d+\.\d+/g) ?? [];
    expect(addresses.length).toBeGreaterThan(20);
    expect(addresses.filter((a) => !allowed.some((r) => inRange(a, r)))).toEqual([]);
  });

  it("puts both ends of each link in its subnet and keeps interface names short", () => {
    for (const l of plan.links) {
      expect(inRange(l.address, l.subnet) && inRange(l.gateway, l.subnet)).toBe(true);
      expect(l.subnet).toBe(`${l.subnet.split("/")[0]}/${l.prefixLength}`);
    }
    const names = vethLines(plan).flatMap((l) => [l.split(" ")[2], l.split(" name ")[1].split(" ")[0]]);
    expect(names.filter((n) => n.length > 15)).toEqual([]);
    expect(() => planTopology("lab-1", 2, 1)).toThrow(/mw\[tl\]-/);
  });

  it("keeps an IPv4 lab free of IPv6: disabled everywhere, no address, route or field of it", () => {
    const text = [...ipBatches(plan).values()].flat().join("\n");
    expect(text).not.toContain(":");
    expect(ip6Routes(plan).size).toBe(0);
    for (const kv of earlySysctls(plan).values()) expect(kv).toContain("net.ipv6.conf.all.disable_ipv6=1");
    expect(plan.links.filter((l) => "address6" in l || "prefix6" in l)).toEqual([]);
    expect(Object.keys(plan.lan).filter((k) => k.endsWith("6"))).toEqual([]);
  });

  const plan6 = planTopology("mwt-abcdef", MAX_LINKS, 255, { lanFrom: ["isp3"] });
  it("plans IPv6 from 2001:db8::/32 only (fe80:: next hops aside), every address without DAD", () => {
    const lines = [...ipBatches(plan6).values(), ...ip6Routes(plan6).values()].flat();
    const addresses = lines.join(" ").split(/\s+/).filter((w) => w.includes(":") && w !== "::/0");
    expect(addresses.length).toBeGreaterThan(40);
    expect(addresses.filter((a) => !inPrefix6(a.split("/")[0], "2001:db8::/32") && !inPrefix6(a.split("/")[0], "fe80::/10"))).toEqual([]);
    expect(lines.filter((l) => l.startsWith("addr add") && l.includes(":") && !l.endsWith(" nodad") && !l.endsWith(" lo"))).toEqual([]);
    for (const [ns, kv] of earlySysctls(plan6)) {
      expect(kv).toContain("net.ipv6.conf.default.accept_dad=0");
      expect(kv).toContain(`net.ipv6.conf.all.forwarding=${ns.includes("-isp") ? 1 : 0}`);
    }
  });

  it("puts both ends of each IPv6 link in its network, delegated prefixes apart from each other and the LAN", () => {
    const prefixes = [plan6.lan.network6!, ...plan6.links.map((l) => l.prefix6!)];
    for (const l of plan6.links) {
      expect(inPrefix6(l.address6!, l.subnet6!) && inPrefix6(l.gateway6!, l.subnet6!)).toBe(true);
      expect(l.address6).not.toBe(l.gateway6);
      expect(l.subnet6).toBe(`${l.subnet6!.split("/")[0]}/${l.prefixLength6}`);
      expect(l.prefix6).toMatch(/\/64$/);
      expect(prefixes.filter((p) => inPrefix6(l.prefix6!.split("/")[0], p))).toEqual([l.prefix6]);
    }
    expect(new Set(plan6.links.map((l) => l.prefixLength6)).size).toBeGreaterThan(1);
    expect(plan6.lan.provider6).toEqual([
      { link: "isp3", network: "2001:db8:c3:3::/64", gatewayAddress: "2001:db8:c3:3::1", clientAddress: "2001:db8:c3:3::10" },
    ]);
    expect(() => planTopology("mwt-abcdef", 2, 1, { lanFrom: ["isp3"] })).toThrow(/no link isp3/);
  });

  it("does IPv6 arithmetic as the kernel prints it", () => {
    expect(format6(parse6("2001:0db8:0000:0000:0001:0000:0000:0001"))).toBe("2001:db8::1:0:0:1");
    expect(["::", "::1", "2001:db8::", "fe80::1:1", "2001:db8:ff04:4:0:1:0:4"].map((a) => format6(parse6(a)))).toEqual(
      ["::", "::1", "2001:db8::", "fe80::1:1", "2001:db8:ff04:4:0:1:0:4"]);
    expect(mapPrefix6("2001:db8:10:1::10", "2001:db8:10:1::/64", "2001:db8:b2:2::/64")).toBe("2001:db8:b2:2::10");
    expect(inPrefix6("2001:db8:b2:2:ffff::1", "2001:db8:b2:2::/64")).toBe(true);
    expect(inPrefix6("2001:db8:b2:3::1", "2001:db8:b2:2::/64")).toBe(false);
    expect(inPrefix6("198.18.1.2", "2001:db8:b2:2::/64")).toBe(false);
    expect(() => parse6("2001:db8::1::2")).toThrow();
  });
});

describeAsRoot("namespace lab", () => {
  it("starts the gateway strict: no forwarding, strict rp_filter, no src_valid_mark", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const { stdout } = await gw(lab, "sysctl", "-n",
        "net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter",
        "net.ipv4.conf.lan0.rp_filter", "net.ipv4.conf.wan1.rp_filter", "net.ipv4.conf.wan2.rp_filter",
        "net.ipv4.conf.all.src_valid_mark");
      expect(stdout.trim().split("\n")).toEqual(["0", "1", "1", "1", "1", "1", "0"]);
      const results = await lab.openConnections(3, { connectTimeoutMs: 300 });
      expect(results.filter((r) => r.ok)).toEqual([]);
    });
  });

  it("(a) forwards un-NATed LAN traffic nowhere: BCP38 drops it, and the internet has no LAN route", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await enableForwarding(lab);
      const results = await lab.openConnections(5, { connectTimeoutMs: 500 });
      expect(results.map((r) => r.ok)).toEqual([false, false, false, false, false]);
      expect(await bcp38Drops(lab, "isp1")).toBeGreaterThan(0);
      const route = await lab.exec("net", ["ip", "route", "get", lab.lanInfo.clientAddress]);
      expect(route.code).not.toBe(0);
    });
  });

  it("(b) with MASQUERADE on wan1, 200 connections all succeed through isp1", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await enableForwarding(lab);
      await masquerade(lab, "wan1");
      const results = await lab.openConnections(200);
      expect(results.filter((r) => !r.ok)).toEqual([]);
      expect(lab.shares(results)).toEqual({ isp1: 1, isp2: 0 });
      expect(new Set(results.map((r) => r.seenAs))).toEqual(new Set([lab.links[0].address]));
    });
  });

  it("(c) drops traffic NATed to the wrong link's address (SNAT to wan2's, routed out wan1)", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await enableForwarding(lab);
      await gw(lab, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan1", "-j", "SNAT", "--to-source", lab.links[1].address);
      const results = await lab.openConnections(5, { connectTimeoutMs: 500 });
      expect(results.filter((r) => r.ok)).toEqual([]);
      expect(await bcp38Drops(lab, "isp1")).toBeGreaterThan(0);
    });
  });

  it("(d) breakUplink fails connections upstream while wan1 stays up; restoreUplink heals them", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await enableForwarding(lab);
      await masquerade(lab, "wan1");
      expect((await lab.openConnections(10)).every((r) => r.ok)).toBe(true);

      await lab.breakUplink("isp1");
      const broken = await lab.openConnections(10, { connectTimeoutMs: 500 });
      expect(broken.filter((r) => r.ok)).toEqual([]);
      const link = await gw(lab, "ip", "-o", "link", "show", "wan1");
      expect(link.stdout).toContain("state UP");
      // The ISP router itself still answers: only forwarding is broken.
      await lab.listen("isp1", { port: 7000, address: lab.links[0].gateway });
      const [local] = await lab.openConnections(1, { from: "gw", dst: lab.links[0].gateway, port: 7000 });
      expect(local).toMatchObject({ ok: true, link: "isp1" });

      await lab.restoreUplink("isp1");
      const healed = await lab.openConnections(10);
      expect(healed.filter((r) => !r.ok)).toEqual([]);
    });
  });

  it("(e) long-lived connections exchange messages and keep one address", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await enableForwarding(lab);
      await masquerade(lab, "wan1");
      const flows = await lab.longLived(5, { port: 22, intervalMs: 50 });
      expect(flows.established).toBe(5);
      await sleep(600);
      const report = await flows.stop();
      expect(report).toMatchObject({ errored: false, stalled: false });
      for (const c of report.connections) {
        expect(c.stable).toBe(true);
        expect(c.link).toBe("isp1");
        expect(c.answered).toBeGreaterThanOrEqual(5);
        expect(c.answered).toBe(c.sent);
      }
    });
  });

  it("(f) UDP echo answers with the address the server saw", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await enableForwarding(lab);
      await masquerade(lab, "wan1");
      const flow = await lab.udpFlow({ intervalMs: 50 });
      await sleep(500);
      const report = await flow.stop();
      expect(report.localPort).toBe(flow.localPort);
      expect(report.replies.length).toBeGreaterThanOrEqual(5);
      expect(report.replies.every((r) => r.link === "isp1")).toBe(true);
    });
  });

  it("(g) cleans up namespaces, agents, stray processes and the root even when the callback throws", async () => {
    let seen: { prefix: string; pids: number[]; root: string } | undefined;
    await expect(
      withLab({ links: 3 }, async (lab) => {
        await lab.listen("gw", { port: 8081, address: lab.links[1].address });
        lab.spawn("gw", ["sleep", "60"]);
        // A daemon that detached itself (as apply.sh may start the health daemon): not our child.
        await lab.sh("gw", "setsid sleep 60 </dev/null >/dev/null 2>&1 &", { check: true });
        const stray = await run(["ip", "netns", "pids", lab.ns.gw]);
        seen = { prefix: lab.prefix, pids: [...lab.pids(), ...stray.stdout.split(/\s+/).filter(Boolean).map(Number)], root: lab.root };
        expect(seen.pids.length).toBeGreaterThanOrEqual(4);
        throw new Error("test failure inside the lab");
      }),
    ).rejects.toThrow("test failure inside the lab");

    const { prefix, pids, root } = seen!;
    const { stdout } = await run(["ip", "netns", "list"], { check: true });
    expect(stdout.split("\n").filter((l) => l.startsWith(`${prefix}-`))).toEqual([]);
    expect(pids.filter(isRunning)).toEqual([]);
    expect(existsSync(root)).toBe(false);
  });

  it("(h) inbound: answers on link 1's address and through DNAT, not on link 2's without policy routing", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const [link1, link2] = lab.links;
      await lab.listen("gw", { port: 8081 });
      const direct = await lab.connectFromServer({ dst: link1.address, port: 8081 });
      expect(direct).toMatchObject({ ok: true, seenAs: lab.serverAddress });
      // Strict rp_filter (the main table's way back is wan1) and BCP38 at isp1 both stop this one.
      const viaLink2 = await lab.connectFromServer({ dst: link2.address, port: 8081, connectTimeoutMs: 500 });
      expect(viaLink2.connected).toBe(false);

      await enableForwarding(lab);
      await masquerade(lab, "wan1");
      await gw(lab, "iptables", "-t", "nat", "-A", "PREROUTING", "-i", "wan1", "-p", "tcp", "--dport", "8080",
        "-j", "DNAT", "--to-destination", `${lab.lanInfo.clientAddress}:8080`);
      const client = await lab.listen("lan", { port: 8080 });
      const forwarded = await lab.connectFromServer({ dst: link1.address, port: 8080, via: lab.serverAddresses.secondary });
      expect(forwarded).toMatchObject({ ok: true, seenAs: lab.serverAddresses.secondary });
      expect((await client.stop()).peers).toEqual([lab.serverAddresses.secondary]);
    });
  });

  it("(i) dual stack: IPv6 needs forwarding and translation; BCP38 drops the LAN's own and a wrong link's sources", async () => {
    await withLab({ links: 2, ipv6: true }, async (lab) => {
      const [link1, link2] = lab.links;
      const { network6, clientAddress6 } = lab.lanInfo;
      // Neighbour discovery answers at once from the first packet on (no DAD, links settled).
      const first = await lab.openConnections(1, { from: "gw", dst: link1.gateway6, port: 7001, connectTimeoutMs: 300 });
      expect(first[0].error).toBe("ECONNREFUSED");
      expect((await lab.openConnections(3, { family: 6, connectTimeoutMs: 300 })).filter((r) => r.connected)).toEqual([]);

      await gw(lab, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1");
      const untranslated = await lab.openConnections(3, { family: 6, connectTimeoutMs: 300 });
      expect(untranslated.filter((r) => r.connected)).toEqual([]);
      expect((await lab.bcp38Drops("isp1")).v6).toBeGreaterThanOrEqual(3);
      expect((await lab.exec("net", ["ip", "-6", "route", "get", clientAddress6!])).code).not.toBe(0);

      // NPT-like 1:1 mapping onto link 1's delegated prefix: the host part survives.
      await gw(lab, "ip6tables", "-t", "nat", "-A", "POSTROUTING", "-o", link1.interface, "-s", network6!, "-j", "NETMAP", "--to", link1.prefix6!);
      const mapped = await lab.openConnections(50, { family: 6, src: lab.lanInfo.extraClientAddresses6![2] });
      expect(mapped.filter((r) => !r.ok)).toEqual([]);
      expect(new Set(mapped.map((r) => r.seenAs))).toEqual(new Set([mapPrefix6(lab.lanInfo.extraClientAddresses6![2], network6!, link1.prefix6!)]));
      expect(lab.shares(mapped)).toEqual({ isp1: 1, isp2: 0 });

      // Masquerade: the server sees link 1's address; link 2's address out of wan1 is dropped.
      await gw(lab, "ip6tables", "-t", "nat", "-F");
      await gw(lab, "conntrack", "-F", "-f", "ipv6");
      await gw(lab, "ip6tables", "-t", "nat", "-A", "POSTROUTING", "-o", link1.interface, "-j", "MASQUERADE");
      const masqueraded = await lab.openConnections(20, { family: 6 });
      expect(masqueraded.every((r) => r.ok && r.seenAs === link1.address6 && r.link === "isp1")).toBe(true);
      await gw(lab, "ip6tables", "-t", "nat", "-F");
      await gw(lab, "conntrack", "-F", "-f", "ipv6");
      await gw(lab, "ip6tables", "-t", "nat", "-A", "POSTROUTING", "-o", link1.interface, "-j", "SNAT", "--to-source", link2.address6!);
      const before = (await lab.bcp38Drops("isp1")).v6;
      expect((await lab.openConnections(3, { family: 6, connectTimeoutMs: 300 })).filter((r) => r.connected)).toEqual([]);
      expect((await lab.bcp38Drops("isp1")).v6).toBeGreaterThan(before);
    });
  });

  it("(j) dual stack: breakUplink breaks both families, restoreUplink heals both; long-lived IPv6 flows keep one address", async () => {
    await withLab({ links: 2, ipv6: true }, async (lab) => {
      await enableForwarding(lab);
      await masquerade(lab, "wan1");
      await gw(lab, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1");
      await gw(lab, "ip6tables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan1", "-j", "MASQUERADE");
      const flows = await lab.longLived(3, { family: 6, port: 22, intervalMs: 50 });
      expect(flows.established).toBe(3);
      await sleep(400);
      const report = await flows.stop();
      expect(report).toMatchObject({ errored: false, stalled: false });
      expect(report.connections.every((c) => c.stable && c.link === "isp1" && c.answered >= 4)).toBe(true);

      await lab.breakUplink("isp1");
      const [v4, v6] = await Promise.all([
        lab.openConnections(5, { connectTimeoutMs: 500 }),
        lab.openConnections(5, { family: 6, connectTimeoutMs: 500 }),
      ]);
      expect([...v4, ...v6].filter((r) => r.connected)).toEqual([]);
      // The ISP router itself still answers over IPv6 (global and link-local).
      const local = await lab.exec("gw", ["ping", "-6", "-c1", "-W1", `${lab.links[0].gateway6LinkLocal}%wan1`]);
      expect(local.code).toBe(0);
      await lab.restoreUplink("isp1");
      const healed = await Promise.all([lab.openConnections(5), lab.openConnections(5, { family: 6 })]);
      expect(healed.flat().filter((r) => !r.ok)).toEqual([]);
      await expect(lab.udpFlow({ dst: lab.serverAddress6 })).rejects.toThrow(/UDP over IPv6/);
    });
  });

  it("traffic options: source address, rate, duration limit, second server", async () => {
    await withLab({ links: 2, lanIndex: 42 }, async (lab) => {
      const [extra] = lab.lanInfo.extraClientAddresses;
      expect(extra).toBe("198.18.42.3");
      const onGateway = await lab.listen("gw", { port: 9000, address: lab.lanInfo.gatewayAddress });
      const paced = await lab.openConnections(10, { src: extra, ratePerSec: 50, dst: lab.lanInfo.gatewayAddress, port: 9000 });
      expect(paced.every((r) => r.ok && r.seenAs === extra)).toBe(true);
      const starts = paced.map((r) => r.startedAt);
      expect(Math.max(...starts) - Math.min(...starts)).toBeGreaterThanOrEqual(150);
      expect(new Set(onGateway.peers())).toEqual(new Set([extra]));

      const t0 = Date.now();
      const limited = await lab.openConnections(100, { ratePerSec: 10, durationLimitMs: 300, connectTimeoutMs: 300 });
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(limited.filter((r) => r.error === "not started: duration limit").length).toBeGreaterThanOrEqual(90);

      await enableForwarding(lab);
      await masquerade(lab, "wan1");
      const second = await lab.openConnections(5, { dst: lab.serverAddresses.secondary, port: 443 });
      expect(second.every((r) => r.ok && r.link === "isp1")).toBe(true);
    });
  });

  it("runs several labs at once, each in its own namespaces", async () => {
    const use = (links: number) =>
      withLab({ links }, async (lab) => {
        await enableForwarding(lab);
        await masquerade(lab, "wan1");
        const results = await lab.openConnections(50);
        return { prefix: lab.prefix, ok: results.filter((r) => r.ok).length };
      });
    const [a, b] = await Promise.all([use(1), use(4)]);
    expect(a.prefix).not.toBe(b.prefix);
    expect([a.ok, b.ok]).toEqual([50, 50]);
  });

  it("reproduces strict rp_filter: mark-routed replies are dropped unless src_valid_mark=1", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const { network } = lab.lanInfo;
      const [, link2] = lab.links;
      await enableForwarding(lab);
      // Everything from the LAN goes out link 2 by fwmark; replies get the mark back from conntrack.
      await lab.exec("gw", ["iptables-restore", "--noflush"], {
        check: true,
        input: [
          "*mangle",
          "-A PREROUTING -j CONNMARK --restore-mark",
          `-A PREROUTING -i lan0 -m conntrack --ctstate NEW -j MARK --set-mark 2`,
          "-A PREROUTING -m conntrack --ctstate NEW -j CONNMARK --save-mark",
          "COMMIT",
          "*nat",
          `-A POSTROUTING -o ${link2.interface} -j MASQUERADE`,
          "COMMIT",
          "",
        ].join("\n"),
      });
      await lab.exec("gw", ["ip", "-batch", "-"], {
        check: true,
        input: [
          `route add ${network} dev lan0 table 102`,
          `route add default via ${link2.gateway} dev ${link2.interface} table 102`,
          "rule add fwmark 2 lookup 102 priority 100",
          "",
        ].join("\n"),
      });
      const strict = await lab.openConnections(5, { connectTimeoutMs: 500 });
      expect(strict.filter((r) => r.connected)).toEqual([]);

      await gw(lab, "sysctl", "-qw", "net.ipv4.conf.all.src_valid_mark=1");
      await gw(lab, "conntrack", "-F");
      const fixed = await lab.openConnections(20);
      expect(fixed.filter((r) => !r.ok)).toEqual([]);
      expect(lab.shares(fixed)).toEqual({ isp1: 0, isp2: 1 });
    });
  });
});
