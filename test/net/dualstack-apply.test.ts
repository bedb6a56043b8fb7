// apply.sh with both families on a real gateway: one transaction per family, both rolled back when
// either fails, a family the new bundle drops removed whole, and remove leaving nothing of either.
import { expect, it } from "vitest";
import { deploy, gatewayState, labSite, renderLabBundle, runApply } from "../../lab/deploy";
import { withLab, type Lab } from "../../lab/lab";
import { describeAsRoot } from "../helpers/root";

const SYSCTLS = ["net.ipv4.ip_forward", "net.ipv4.conf.all.src_valid_mark", "net.ipv6.conf.all.forwarding"];
const sysctls = async (lab: Lab) => (await lab.sh(lab.ns.gw, `sysctl ${SYSCTLS.join(" ")}`, { check: true })).stdout;
const ours = (saved: string | undefined) => (saved ?? "").split("\n").filter((l) => /MWAN-/.test(l));

describeAsRoot("apply.sh, dual stack", () => {
  it("rolls back both families when the IPv6 step fails after IPv4 went live", async () => {
    await withLab({ links: 2, ipv6: true }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [3, 1], ipv6: { nat6: "npt" } }));
      const before = await gatewayState(lab);
      expect(ours(before.ip6tables).length).toBeGreaterThan(10);

      // New IPv4 weights (applied first), then an IPv6 route the kernel refuses: a next hop off
      // every link network (the config cannot know: address6 has no /prefix here).
      const broken = labSite(lab, { weights: [1, 1], ipv6: { nat6: "npt" } });
      Object.assign(broken.gateways[0].links[1], { gateway6: "2001:db8:ffff::1", address6: lab.links[1].address6 });
      const r = await runApply(lab, renderLabBundle(broken));
      expect(r.stderr).toMatch(/ip -6 route replace default via 2001:db8:ffff::1 dev wan2 table 102: /);
      expect(r.stderr).toContain("apply failed; the previous state was restored");
      expect(await gatewayState(lab)).toEqual(before);

      // The same failure from an IPv4-only gateway: IPv6 forwarding, which the failed apply turned
      // on, goes back off with the rest.
      await deploy(lab, labSite(lab, { weights: [3, 1] }));
      const v4only = { state: await gatewayState(lab), sysctls: await sysctls(lab) };
      expect(v4only.sysctls).toContain("net.ipv6.conf.all.forwarding = 0");
      expect((await runApply(lab, renderLabBundle(broken))).stderr).toContain("apply failed; the previous state was restored");
      expect({ state: await gatewayState(lab), sysctls: await sysctls(lab) }).toEqual(v4only);
    });
  }, 60_000);

  it("adds IPv6 to an IPv4-only gateway and takes it away again whole; remove leaves nothing of either", async () => {
    await withLab({ links: 2, ipv6: true }, async (lab) => {
      const pristine = { state: await gatewayState(lab), sysctls: await sysctls(lab) };
      await deploy(lab, labSite(lab, { weights: [3, 1] }));
      const v4only = await gatewayState(lab);
      expect(ours(v4only.ip6tables)).toEqual([]);

      await deploy(lab, labSite(lab, { weights: [3, 1], ipv6: { nat6: ["npt", "masquerade"] } }));
      const dual = await gatewayState(lab);
      expect(dual.iptables).toBe(v4only.iptables); // the IPv4 side untouched
      expect(ours(dual.ip6tables)).toContain("nat -A MWAN-NATPRE -d 2001:db8:a1:1::/64 -i wan1 -j NETMAP --to 2001:db8:10:1::/64");
      expect(dual.rules6).toContain("1201:\tfrom all fwmark 0x200/0xff00 lookup 102");
      // Leaving npt: the inbound mapping's chain stays hooked, empty.
      await deploy(lab, labSite(lab, { weights: [3, 1], ipv6: { nat6: "masquerade" } }));
      expect(ours((await gatewayState(lab)).ip6tables).filter((l) => l.includes("NATPRE"))).toEqual(["nat :MWAN-NATPRE -", "nat -A PREROUTING -j MWAN-NATPRE"]);

      await deploy(lab, labSite(lab, { weights: [3, 1] }));
      expect(await gatewayState(lab)).toEqual(v4only);

      const bundle = await deploy(lab, labSite(lab, { weights: [1, 1], ipv6: { nat6: "npt" } }));
      expect((await runApply(lab, bundle, "remove")).code).toBe(0);
      expect({ state: await gatewayState(lab), sysctls: await sysctls(lab) }).toEqual(pristine);
      expect((await lab.exec(lab.ns.gw, ["find", lab.root, "-type", "f"])).stdout).toBe("");
    });
  }, 60_000);

  it("runs an IPv6-only gateway: no IPv4 rules, routes or sysctls of its own, IPv6 split 3:1, remove leaves nothing", async () => {
    await withLab({ links: 2, ipv6: true }, async (lab) => {
      const pristine = { state: await gatewayState(lab), sysctls: await sysctls(lab) };
      const site = labSite(lab, { weights: [3, 1], ipv6: { nat6: "npt" } });
      const gw = site.gateways[0] as { lan: Record<string, unknown>; links: Record<string, unknown>[] };
      delete gw.lan.networks;
      for (const l of gw.links) {
        delete l.gateway;
        delete l.address;
        delete (l.check as Record<string, unknown>).targets;
      }
      const bundle = await deploy(lab, site);
      const state = await gatewayState(lab);
      expect(ours(state.iptables)).toEqual([]);
      expect(state.rules).toBe(pristine.state.rules);
      expect(await sysctls(lab)).toContain("net.ipv4.ip_forward = 0\n");
      const v6 = await lab.openConnections(400, { family: 6 });
      expect(v6.filter((r) => !r.ok)).toEqual([]);
      expect(lab.shares(v6)).toEqual({ isp1: 0.75, isp2: 0.25 });
      const v4 = await lab.openConnections(20, { connectTimeoutMs: 500 });
      console.log(`IPv6-only gateway: IPv6 isp1 ${lab.shares(v6).isp1 * 100} %, isp2 ${lab.shares(v6).isp2 * 100} % of 400; IPv4 from the LAN: ${v4.filter((r) => r.ok).length} of 20 (not forwarded)`);
      expect(v4.filter((r) => r.ok)).toEqual([]);
      expect((await runApply(lab, bundle, "remove")).code).toBe(0);
      expect({ state: await gatewayState(lab), sysctls: await sysctls(lab) }).toEqual(pristine);
    });
  }, 60_000);
});
