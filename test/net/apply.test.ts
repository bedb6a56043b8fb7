// apply.sh on a real gateway: idempotent, atomic, kind to the host's own rules and to live traffic.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { writeBundle } from "../../components/bundle-files";
import { withLab } from "../../lab/lab";
import { deploy, gatewayState, labSite, renderLabBundle, runApply } from "../../lab/deploy";
import { describeAsRoot } from "../helpers/root";

describeAsRoot("apply.sh", () => {
  it("applied twice gives byte-identical rules and policy routes, and keeps the host's rules", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await lab.sh(lab.ns.gw, "iptables -t mangle -A PREROUTING -s 198.18.0.9/32 -j ACCEPT && iptables -t nat -A POSTROUTING -s 198.18.0.9/32 -j RETURN && iptables -A FORWARD -s 198.18.0.9/32 -j DROP", { check: true });
      const bundle = await deploy(lab, labSite(lab, { weights: [3, 1] }));
      const first = await gatewayState(lab);
      await deploy(lab, labSite(lab, { weights: [3, 1] }));
      const second = await gatewayState(lab);

      expect(second).toEqual(first);
      for (const hostRule of ["-A PREROUTING -s 198.18.0.9/32 -j ACCEPT", "-A POSTROUTING -s 198.18.0.9/32 -j RETURN", "-A FORWARD -s 198.18.0.9/32 -j DROP"]) {
        expect(first.iptables).toContain(hostRule);
      }
      // Every rule we render is what iptables-save prints back: no normalisation surprises.
      const saved = first.iptables.split("\n").map((l) => l.replace(/^\S+ /, ""));
      const ours = bundle["iptables.rules"].split("\n").filter((l) => l.startsWith("-A MWAN"));
      for (const rule of ours) expect(saved).toContain(rule);
      expect(saved.filter((l) => l === "-A PREROUTING -j MWAN-PRE")).toHaveLength(1);
      expect(first.rules.match(/lookup 101/g)).toHaveLength(2); // fwmark and from-address, once each
    });
  });

  it("re-applies (same bundle, then a changed weight) under load without breaking a connection", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [1, 1] }));
      const flows = await lab.longLived(10, { intervalMs: 50, durationMs: 30_000 });
      const load = lab.openConnections(200, { ratePerSec: 20, concurrency: 10, connectTimeoutMs: 2000 });
      for (const weights of [[1, 1], [1, 1], [3, 1], [1, 2], [3, 1]]) {
        await deploy(lab, labSite(lab, { weights }));
        await new Promise((r) => setTimeout(r, 1000));
      }
      const results = await load;
      const report = await flows.stop();

      expect(results.filter((r) => !r.ok).map((r) => r.error)).toEqual([]);
      expect(report.errored).toBe(false);
      expect(report.stalled).toBe(false);
      expect(report.connections.every((c) => c.stable)).toBe(true);
    });
  });

  it("a split with fewer chains deletes the ones it no longer uses, and so does a rollback", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [3, 1] }));
      const simple = await gatewayState(lab);
      const failing = labSite(lab, { weights: [188, 19] });
      failing.gateways[0].links[1].gateway = "192.0.2.99";
      delete (failing.gateways[0].links[1] as { address?: string }).address;
      expect((await runApply(lab, renderLabBundle(failing))).stderr).toContain("apply failed; the previous state was restored");
      expect(await gatewayState(lab)).toEqual(simple);

      const bundle = await deploy(lab, labSite(lab, { weights: [188, 19] }));
      const nested = (await gatewayState(lab)).iptables.split("\n").map((l) => l.replace(/^\S+ /, ""));
      const split = bundle["iptables.rules"].split("\n").filter((l) => /^-A MWAN-(BALANCE|MARK)/.test(l));
      expect(split.filter((l) => l.startsWith("-A MWAN-BALANCE-")).length).toBeGreaterThan(0);
      for (const rule of split) expect(nested).toContain(rule); // saved back as rendered
      await deploy(lab, labSite(lab, { weights: [3, 1] }));
      expect(await gatewayState(lab)).toEqual(simple);
    });
  });

  it("leaves the previous rules in place when the kernel rejects the new ones", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [3, 1] }));
      const before = await gatewayState(lab);
      const bad = renderLabBundle(labSite(lab, { weights: [1, 1] }));
      bad["iptables.rules"] = bad["iptables.rules"].replace("COMMIT", "-A MWAN-PRE -m nosuchmatch -j RETURN\nCOMMIT");
      const r = await runApply(lab, bad);

      expect(r.code).toBe(1);
      expect(r.stderr).toContain("the kernel rejects these IPv4 rules; nothing was changed");
      expect(await gatewayState(lab)).toEqual(before);
    });
  });

  it("rolls back to the previous bundle when a later step fails", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [3, 1] }));
      const before = await gatewayState(lab);
      // Rules are valid, but link 2's route names a next hop the kernel cannot reach.
      const site = labSite(lab, { weights: [1, 1] });
      site.gateways[0].links[1].gateway = "192.0.2.99";
      delete (site.gateways[0].links[1] as { address?: string }).address;
      const r = await runApply(lab, renderLabBundle(site));

      expect(r.code).toBe(1);
      expect(r.stderr).toContain("apply failed; the previous state was restored");
      expect(await gatewayState(lab)).toEqual(before);
      expect((await lab.openConnections(100)).every((c) => c.ok)).toBe(true);
    });
  });

  it("a first apply that fails leaves nothing behind, and remove undoes a good one", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const pristine = await gatewayState(lab);
      const site = labSite(lab);
      site.gateways[0].links[1].gateway = "192.0.2.99";
      delete (site.gateways[0].links[1] as { address?: string }).address;
      expect((await runApply(lab, renderLabBundle(site))).code).toBe(1);
      expect(await gatewayState(lab)).toEqual(pristine);

      const bundle = await deploy(lab, labSite(lab));
      expect((await runApply(lab, bundle, "remove")).code).toBe(0);
      const after = await gatewayState(lab);
      expect(after.rules).toEqual(pristine.rules);
      expect(after.routes).toEqual(pristine.routes);
      expect(after.iptables.split("\n").filter((l) => l.includes("MWAN"))).toEqual([]);
      expect((await lab.exec(lab.ns.gw, ["find", lab.root, "-type", "f"])).stdout).toBe("");
    });
  });

  it("without systemd it runs the health daemon itself: restarts it on re-apply, stops it on remove", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const bundle = await deploy(lab, labSite(lab), { daemon: true });
      const pidOf = async () => (await lab.sh(lab.ns.gw, `cat ${lab.root}/run/multiwan/health.pid`)).stdout.trim();
      const alive = async (pid: string) => (await lab.exec(lab.ns.gw, ["kill", "-0", pid])).code === 0;
      const first = await pidOf();
      expect(await alive(first)).toBe(true);

      await deploy(lab, labSite(lab), { daemon: true });
      const second = await pidOf();
      expect(second).not.toBe(first);
      expect(await alive(first)).toBe(false);
      expect(await alive(second)).toBe(true);

      expect((await runApply(lab, bundle, "remove", { daemon: true })).code).toBe(0);
      expect(await alive(second)).toBe(false);
      expect((await lab.exec(lab.ns.gw, ["find", lab.root, "-type", "f", "-not", "-path", "*/var/log/*"])).stdout).toBe("");
    });
  });

  it("the boot-time restore brings rules, policy routes and tables back after a reboot", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [3, 1] }));
      const before = await gatewayState(lab);
      // What a reboot forgets: every rule, policy rule and route multiwan added.
      await lab.sh(lab.ns.gw, "iptables -t mangle -F && iptables -t mangle -X && iptables -t nat -F && iptables -t nat -X && ip rule flush && ip rule add pref 32766 lookup main && ip rule add pref 32767 lookup default && ip route flush table 101 && ip route flush table 102", { check: true });
      const r = await lab.exec(lab.ns.gw, ["env", `MULTIWAN_ROOT=${lab.root}`, "MULTIWAN_NO_SYSTEMD=1", "sh", `${lab.root}/etc/multiwan/apply.sh`, "restore"]);
      expect(r.code).toBe(0);
      expect(await gatewayState(lab)).toEqual(before);
      expect((await lab.sh(lab.ns.gw, `cat ${lab.root}/etc/iproute2/rt_tables.d/multiwan.conf`)).stdout).toContain("101\tmwan_isp1");
    });
  });

  it("a reboot before an apply is confirmed brings back the previous bundle, not the unconfirmed one", async () => {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [3, 1] }));
      const confirmed = await gatewayState(lab);
      const env = ["env", `MULTIWAN_ROOT=${lab.root}`, "MULTIWAN_NO_SYSTEMD=1"];
      const dir = mkdtempSync(join(tmpdir(), "mwt-bundle-"));
      try {
        writeBundle(dir, renderLabBundle(labSite(lab, { weights: [1, 1] })));
        const r = await lab.exec(lab.ns.gw, [...env, "MULTIWAN_CONFIRM_TIMEOUT=600", "sh", join(dir, "apply.sh")]);
        expect(r.code, r.stderr).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      expect(await gatewayState(lab)).not.toEqual(confirmed);
      // The reboot: the watchdog dies, /run is empty, the kernel has none of our rules.
      await lab.sh(lab.ns.gw, `kill -TERM -$(cat ${lab.root}/run/multiwan/watchdog.pid) && rm -rf ${lab.root}/run/multiwan`, { check: true });
      await lab.sh(lab.ns.gw, "iptables -t mangle -F && iptables -t mangle -X && iptables -t nat -F && iptables -t nat -X && ip rule flush && ip rule add pref 32766 lookup main && ip rule add pref 32767 lookup default && ip route flush table 101 && ip route flush table 102", { check: true });
      const boot = await lab.exec(lab.ns.gw, [...env, "sh", `${lab.root}/etc/multiwan/apply.sh`, "restore"]);
      expect(boot.code, boot.stderr).toBe(0);
      expect(boot.stderr).toContain("an apply was still unconfirmed at boot: rolled back to the previous state");
      expect(await gatewayState(lab)).toEqual(confirmed);
    });
  });
});
