// The lab itself, without the product: the gateway is configured by hand in each test, to show
// that the lab fails what the internet would fail and passes what it would pass.
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { isRunning, run } from "../../lab/exec";
import { withLab, type Lab } from "../../lab/lab";
import { ipBatches, MAX_LINKS, planTopology, vethLines } from "../../lab/topology";
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
