// Drift on real netfilter: the probe run in the gateway's namespace, compared with the bundle; each
// kind of hand edit, including host rules that shadow our hooks, sysctls and deleted system files.
import { expect, it } from "vitest";
import { compareProbe } from "../../components/drift";
import { probeCommand } from "../../components/probe-protocol";
import { planGateway } from "../../components/plan";
import { parseSite } from "../../components/config";
import { withLab, type Lab } from "../../lab/lab";
import { deploy, labSite } from "../../lab/deploy";
import { healthState } from "../../lab/failover";
import { waitFor } from "./health";
import { describeAsRoot } from "../helpers/root";

const FAST = { interval: 0.1, timeout: 0.25, down: 3, up: 10 };

async function driftOf(lab: Lab, site: ReturnType<typeof labSite>, files: Record<string, string>) {
  const plan = planGateway(parseSite(site).gateways[0]);
  const probe = { files, installDir: plan.installDir, root: plan.root };
  const out = await lab.sh(lab.ns.gw, probeCommand(probe), { check: true });
  return compareProbe(probe, out.stdout);
}

describeAsRoot("drift against a real gateway", () => {
  it("reports nothing after an apply, and each hand-made change by name", async () => {
    await withLab({ links: 2 }, async (lab) => {
      // 188:19: a split with chains below MWAN-BALANCE, each one checked.
      const site = labSite(lab, { weights: [188, 19], health: FAST });
      const files = await deploy(lab, site, { daemon: true });
      await waitFor("the daemon's first state", () => healthState(lab) !== undefined, 5000);
      expect(await driftOf(lab, site, files)).toEqual({ status: "in-sync", drift: [], variant: "isp1+isp2" });

      const cases: [string, string, RegExp][] = [
        ["delete a rule", "iptables -t mangle -D MWAN-PRE -i wan2 -m conntrack --ctstate NEW -j MARK --set-xmark 0x200/0xff00",
          /^missing iptables mangle MWAN-PRE: -A MWAN-PRE -i wan2 -m conntrack --ctstate NEW -j MARK --set-xmark 0x200\/0xff00$/],
        ["add a rule", "iptables -t nat -A MWAN-POST -s 198.18.9.0/24 -o wan1 -j MASQUERADE",
          /^extra iptables nat MWAN-POST: -A MWAN-POST -s 198.18.9.0\/24 -o wan1 -j MASQUERADE$/],
        ["delete an ip rule", "ip rule del pref 1201",
          /^missing ip rule: 1201: from all fwmark 0x200\/0xff00 lookup 102$/],
        ["remove the rt_tables line", `sed -i '/mwan_isp2/d' ${lab.root}/etc/iproute2/rt_tables.d/multiwan.conf`,
          /^missing rt_tables: 102\tmwan_isp2$/],
        ["unhook", "iptables -t mangle -D PREROUTING -j MWAN-PRE",
          /^missing iptables mangle PREROUTING \(hooks\): -A PREROUTING -j MWAN-PRE$/],
        ["edit inside the balancing chain", "iptables -t mangle -R MWAN-BALANCE 1 -m statistic --mode nth --every 8 --packet 0 -g MWAN-BALANCE-1",
          /^(missing|extra) iptables mangle MWAN-BALANCE: /],
        ["edit inside a chain below it", "iptables -t mangle -R MWAN-BALANCE-1 1 -m statistic --mode nth --every 23 --packet 0 -g MWAN-MARK-2",
          /^(missing|extra) iptables mangle MWAN-BALANCE-1: /],
        ["stop the daemon", `kill $(cat ${lab.root}/run/multiwan/health.pid)`,
          /^stopped health daemon: multiwan-health is inactive$/],
        // Left in place by the repair, which puts our hook back on top: below it, it shadows nothing.
        ["accept everything above our hook", "iptables -t mangle -I PREROUTING 1 -j ACCEPT",
          /^shadowing iptables mangle PREROUTING: -A PREROUTING -j ACCEPT \(above the -j MWAN-PRE hook: packets it matches never reach multiwan's rules\)$/],
        ["turn off src_valid_mark", "sysctl -q -w net.ipv4.conf.all.src_valid_mark=0",
          /^changed sysctl: net\.ipv4\.conf\.all\.src_valid_mark is 0, the bundle sets 1$/],
        ["delete the health unit", `rm ${lab.root}/etc/systemd/system/multiwan-health.service`,
          new RegExp(`^missing file: ${lab.root}/etc/systemd/system/multiwan-health\\.service$`)],
        ["delete the sysctl.d file", `rm ${lab.root}/etc/sysctl.d/90-multiwan.conf`,
          new RegExp(`^missing file: ${lab.root}/etc/sysctl\\.d/90-multiwan\\.conf$`)],
      ];
      for (const [what, change, expected] of cases) {
        await lab.sh(lab.ns.gw, change, { check: true });
        const report = await driftOf(lab, site, files);
        expect(report.status, what).toBe("drifted");
        expect(report.drift.some((d) => expected.test(d)), `${what}: ${report.drift.join(" | ")}`).toBe(true);
        await deploy(lab, site, { daemon: true }); // the repair a `pulumi up` does
        expect((await driftOf(lab, site, files)).drift, `after repairing "${what}"`).toEqual([]);
      }
    });
  }, 120_000);

  it("checks IPv6 like IPv4 on a dual-stack gateway: in sync after an apply and a failover, each hand edit by name", async () => {
    await withLab({ links: 2, ipv6: true }, async (lab) => {
      const site = labSite(lab, { weights: [3, 1], health: FAST, ipv6: { nat6: "npt" } });
      const files = await deploy(lab, site, { daemon: true });
      await waitFor("the daemon's first state", () => healthState(lab) !== undefined, 5000);
      expect(await driftOf(lab, site, files)).toEqual({ status: "in-sync", drift: [], variant: "isp1+isp2" });

      const isp1 = lab.links[0];
      const cases: [string, string, RegExp][] = [
        ["delete an IPv6 rule", "ip6tables -t mangle -D MWAN-PRE -i wan2 -m conntrack --ctstate NEW -j MARK --set-xmark 0x200/0xff00",
          /^missing ip6tables mangle MWAN-PRE: -A MWAN-PRE -i wan2 -m conntrack --ctstate NEW -j MARK --set-xmark 0x200\/0xff00$/],
        ["delete the inbound prefix mapping", `ip6tables -t nat -D MWAN-NATPRE 1`,
          /^missing ip6tables nat MWAN-NATPRE: -A MWAN-NATPRE -d \S+ -i wan1 -j NETMAP --to \S+$/],
        ["delete an IPv6 policy rule", "ip -6 rule del pref 1201",
          /^missing ip -6 rule: 1201: from all fwmark 0x200\/0xff00 lookup 102$/],
        ["flush a link's IPv6 table", "ip -6 route flush table 101",
          new RegExp(`^missing IPv6 route table 101: default via ${isp1.gateway6} dev wan1 metric 1024 pref medium$`)],
        ["unhook IPv6", "ip6tables -t nat -D POSTROUTING -j MWAN-POST",
          /^missing ip6tables nat POSTROUTING \(hooks\): -A POSTROUTING -j MWAN-POST$/],
        ["accept all IPv6 above our hook", "ip6tables -t mangle -I PREROUTING 1 -j ACCEPT",
          /^shadowing ip6tables mangle PREROUTING: -A PREROUTING -j ACCEPT /],
        ["turn off IPv6 forwarding", "sysctl -q -w net.ipv6.conf.all.forwarding=0",
          /^changed sysctl: net\.ipv6\.conf\.all\.forwarding is 0, the bundle sets 1$/],
      ];
      for (const [what, change, expected] of cases) {
        await lab.sh(lab.ns.gw, change, { check: true });
        const report = await driftOf(lab, site, files);
        expect(report.status, what).toBe("drifted");
        expect(report.drift.some((d) => expected.test(d)), `${what}: ${report.drift.join(" | ")}`).toBe(true);
        await deploy(lab, site, { daemon: true });
        expect((await driftOf(lab, site, files)).drift, `after repairing "${what}"`).toEqual([]);
      }

      await lab.breakUplink("isp1");
      await waitFor("isp1 down", () => healthState(lab)?.variant === "isp2", 5000);
      expect(await driftOf(lab, site, files)).toEqual({ status: "in-sync", drift: [], variant: "isp2" });
      await lab.restoreUplink("isp1");

      // isp2 without IPv6: every variant's IPv6 rules send all to isp1, IPv4's name the variant.
      const partial = labSite(lab, { weights: [3, 1], health: FAST, ipv6: { nat6: "npt" } });
      const isp2 = partial.gateways[0].links[1] as Record<string, unknown> & { check: Record<string, unknown> };
      for (const k of ["gateway6", "address6", "prefix6", "nat6"]) delete isp2[k];
      delete isp2.check.targets6;
      const partialFiles = await deploy(lab, partial, { daemon: true });
      await waitFor("both links up", () => healthState(lab)?.variant === "isp1+isp2", 10_000);
      expect(await driftOf(lab, partial, partialFiles)).toEqual({ status: "in-sync", drift: [], variant: "isp1+isp2" });
    });
  }, 120_000);

  it("accepts every variant the health daemon swaps in: a failover is not drift", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const site = labSite(lab, { weights: [188, 19], health: FAST });
      const files = await deploy(lab, site, { daemon: true });
      await lab.breakUplink("isp1");
      await waitFor("isp1 down", () => healthState(lab)?.variant === "isp2", 5000);
      expect(await driftOf(lab, site, files)).toEqual({ status: "in-sync", drift: [], variant: "isp2" });
    });
  }, 60_000);
});
