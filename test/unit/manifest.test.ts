// The bundle's manifest: what it says about the fixture gateway, that it agrees with the rendered
// files it describes, how readers refuse a missing or foreign one, and that the scripts take their
// paths from the same layout (health.sh's state.json read back by status).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readManifest, type Manifest } from "../../components/manifest";
import { planGateway } from "../../components/plan";
import { TEMPLATE_DIR, renderBundle } from "../../components/render";
import { parseStatus } from "../../components/status";
import { gateway } from "./fixtures";
import { healthFunctions } from "./health-sh";

const files = renderBundle(planGateway(gateway((s) => (s.gateways[0].root = "/srv/gw1"))));
const manifest: Manifest = JSON.parse(files["manifest.json"]);
const scratch = mkdtempSync(join(tmpdir(), "mwt-manifest-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("manifest.json", () => {
  it("describes the fixture gateway", () => {
    expect(manifest).toEqual({
      format: 1,
      gateway: "gw1",
      root: "/srv/gw1",
      installDir: "/srv/gw1/etc/multiwan",
      links: [
        { name: "isp1", interface: "wan1", markValue: 256, fwmark: "0x100/0xff00", markByte: 1, table: 101, tableName: "mwan_isp1", targets: ["192.0.2.1"], tier: 1, failback: "keep" },
        { name: "isp2", interface: "wan2", markValue: 512, fwmark: "0x200/0xff00", markByte: 2, table: 102, tableName: "mwan_isp2", targets: ["192.0.2.1"], tier: 1, failback: "keep" },
      ],
      priorities: { owned: { first: 1000, last: 1299 }, suppressMain: 1000, from: { isp1: 1100 }, fwmark: { isp1: 1200, isp2: 1201 } },
      markMask: "0xff00",
      variants: ["isp1", "isp2", "isp1+isp2", "none"],
      // Only where the links carrying differ from the variant's live links. lastResort "all": with
      // every link down, balancing goes on over all of them.
      carrying: { none: ["isp1", "isp2"] },
      paths: {
        installDir: "/srv/gw1/etc/multiwan",
        rtTables: "/srv/gw1/etc/iproute2/rt_tables.d/multiwan.conf",
        sysctl: "/srv/gw1/etc/sysctl.d/90-multiwan.conf",
        unitDir: "/srv/gw1/etc/systemd/system",
        hooksDir: "/srv/gw1/etc/multiwan-hooks.d",
        stageDir: "/srv/gw1/var/lib/multiwan",
        sysctlBefore: "/srv/gw1/var/lib/multiwan/sysctl.before",
        hostRules: "/srv/gw1/var/lib/multiwan/ip.host",
        hostRules6: "/srv/gw1/var/lib/multiwan/ip6.host",
        runDir: "/srv/gw1/run/multiwan",
        stateFile: "/srv/gw1/run/multiwan/state.json",
        variantFile: "/srv/gw1/run/multiwan/variant",
        linksDir: "/srv/gw1/run/multiwan/links",
        probesDir: "/srv/gw1/run/multiwan/probes",
        hookQueueDir: "/srv/gw1/run/multiwan/hook-queue",
        pidFile: "/srv/gw1/run/multiwan/health.pid",
        pendingFile: "/srv/gw1/var/lib/multiwan/pending",
        watchdogPid: "/srv/gw1/run/multiwan/watchdog.pid",
        lockFile: "/srv/gw1/run/multiwan/lock",
        healthLog: "/srv/gw1/var/log/multiwan-health.log",
        applyLog: "/srv/gw1/var/log/multiwan-apply.log",
      },
      units: { restore: "multiwan-restore.service", health: "multiwan-health.service" },
      families: [{
        family: 4,
        rulesFile: "iptables.rules",
        hooksFile: "iptables.hooks",
        batchFile: "ip.batch",
        variantSuffix: ".rules",
        lanNetworks: ["198.18.1.0/24"],
        balanceChains: ["MWAN-BALANCE"],
        hooks: [
          { table: "mangle", chain: "PREROUTING", target: "MWAN-PRE" },
          { table: "mangle", chain: "OUTPUT", target: "MWAN-OUT" },
          { table: "nat", chain: "POSTROUTING", target: "MWAN-POST" },
        ],
        rules: [
          "1000: from all lookup main suppress_prefixlength 0",
          "1100: from 203.0.113.2 lookup 101",
          "1200: from all fwmark 0x100/0xff00 lookup 101",
          "1201: from all fwmark 0x200/0xff00 lookup 102",
        ],
        routes: [
          { table: 101, route: "default via 203.0.113.1 dev wan1" },
          { table: 102, route: "default via 198.51.100.5 dev wan2" },
        ],
      }],
      lan: { interfaces: ["lan0"], networks: ["198.18.1.0/24"], networks6: [] },
      sysctls: [
        { key: "net.ipv4.ip_forward", value: "1" },
        { key: "net.ipv4.conf.all.src_valid_mark", value: "1" },
      ],
      health: { interval: 0.5 },
    });
    expect(readManifest(files)).toEqual(manifest);
  });

  it("reads a manifest from before IPv6 (no families, no newer paths) as the IPv4 family of its own ip.batch", () => {
    const old = JSON.parse(files["manifest.json"]);
    const [v4] = old.families;
    delete old.families;
    delete old.paths.hostRules6;
    delete old.lan.networks6;
    Object.assign(old, { hooks: v4.hooks, balanceChains: v4.balanceChains });
    const m = readManifest({ ...files, "manifest.json": JSON.stringify(old) });
    expect(m.families).toEqual([v4]);
    expect(m.paths.hostRules6).toBe("/srv/gw1/var/lib/multiwan/ip6.host");
  });

  it("agrees with the files it describes", () => {
    const prefs = [...files["ip.batch"].matchAll(/^rule add pref (\d+) /gm)].map((m) => Number(m[1]));
    const { owned, suppressMain, from, fwmark } = manifest.priorities;
    expect(prefs.sort()).toEqual([suppressMain, ...Object.values(from), ...Object.values(fwmark)].sort());
    for (const p of prefs) expect(p >= owned.first && p <= owned.last).toBe(true);
    expect(files["rt_tables"]).toContain(manifest.links.map((l) => `${l.table}\t${l.tableName}\n`).join(""));
    expect(Object.keys(files).filter((f) => f.startsWith("variants/")).sort()).toEqual(manifest.variants.map((v) => `variants/${v}.rules`).sort());
    expect(files["iptables.hooks"]).toBe(manifest.families[0].hooks.map((h) => `${h.table}\t-A ${h.chain} -j ${h.target}\n`).join(""));
    expect(files["sysctl.conf"]).toContain(manifest.sysctls.map((s) => `${s.key} = ${s.value}\n`).join(""));
  });

  it("records tiers, the links each variant carries and the table of the route to nowhere, as the files have them", () => {
    const tiered = renderBundle(planGateway(gateway((s) => {
      s.gateways[0].links[1].tier = 2;
      s.gateways[0].links[1].failback = "move";
      s.gateways[0].balance = { policies: [{ name: "voip", match: { protocols: ["udp"], ports: [5060] }, links: ["isp1"], whenDown: "unreachable" }] };
    })));
    const m = readManifest(tiered);
    expect(m.links.map((l) => [l.name, l.tier, l.failback])).toEqual([["isp1", 1, "keep"], ["isp2", 2, "move"]]);
    // isp2 is a backup: it carries new connections only while isp1 is down (in variant isp2, as its live links).
    expect(m.carrying).toEqual({ "isp1+isp2": ["isp1"], none: ["isp1"] });
    expect(m.unreachable).toEqual({ table: 103, tableName: "mwan.unreachable" });
    expect(tiered["rt_tables"]).toContain("103\tmwan.unreachable\n");
    expect(tiered["ip.batch"]).toContain("route replace prohibit default table 103\n");
    expect(tiered["ip.undo"]).toContain("route flush table 103\n");
    expect(manifest.unreachable).toBeUndefined(); // no policy refuses: no table of its own
  });

  it("readers refuse a bundle without one, or of a format they do not know", () => {
    const { "manifest.json": _, ...old } = files;
    expect(() => readManifest(old)).toThrow(/has no manifest.json \(an older multiwan pushed it\): push it again/);
    expect(() => readManifest({ ...files, "manifest.json": JSON.stringify({ ...manifest, format: 2 }) })).toThrow(/format 2; this multiwan reads format 1/);
    expect(() => readManifest({ ...files, "manifest.json": "{" })).toThrow(/not JSON/);
    const badTable = { ...manifest, links: [{ ...manifest.links[0], table: "101; reboot" }] };
    expect(() => readManifest({ ...files, "manifest.json": JSON.stringify(badTable) })).toThrow(/invalid manifest.json: links isp1/);
    const { sysctls: _s, ...noSysctls } = manifest;
    expect(() => readManifest({ ...files, "manifest.json": JSON.stringify(noSysctls) })).toThrow(/lacks sysctls or health \(an older multiwan pushed it\): push it again/);
    const badKey = { ...manifest, sysctls: [{ key: "net.ipv4.ip_forward; reboot", value: "1" }] };
    expect(() => readManifest({ ...files, "manifest.json": JSON.stringify(badKey) })).toThrow(/invalid manifest.json: sysctls/);
  });
});

describe("the scripts' paths come from the layout", () => {
  it.each(["apply.sh", "health.sh"])("%s.mustache names no installed path itself", (script) => {
    const template = readFileSync(join(TEMPLATE_DIR, `${script}.mustache`), "utf8");
    expect(template).not.toMatch(/run\/multiwan|etc\/multiwan|etc\/iproute2|etc\/sysctl|etc\/systemd|var\/log|state\.json|health\.pid/);
  });

  it("health.sh writes the state.json that status reads", () => {
    const root = join(scratch, "health-root");
    const bundle = renderBundle(planGateway(gateway((s) => ((s.gateways[0].root = root), (s.health = { quality: { latencyMs: 500, window: 5 } })))));
    // One state write from link files as a run left them: isp1 degraded by 8 of 10 probes answered
    // in 912.345 ms each (window tokens sent:answered:µs), isp2 down.
    const window = "2:2:1824690 2:2:1824690 2:2:1824690 2:1:912345 2:1:912345";
    healthFunctions(bundle, `mkdir -p "$linkstate"\necho "degraded 2000 9 0 2 3 ${window}" >"$linkstate/isp1"\necho "down 1000 0 3 0 7" >"$linkstate/isp2"\nnow=$(now_ms) round=42\nwrite_state_json`);
    const state = readFileSync(JSON.parse(bundle["manifest.json"]).paths.stateFile, "utf8");
    const status = parseStatus(`@@multiwan@@ daemon\nactive\n@@multiwan@@ state\n${state}`, bundle);
    // With no link up, the degraded one carries: a slow line beats none.
    expect(status.variant).toBe("isp1");
    expect(status.links.map((l) => [l.name, l.status, l.carrying])).toEqual([["isp1", "degraded", true], ["isp2", "down", false]]);
    expect(status.links[0].quality).toEqual({ rttMs: 912.345, lossPercent: 20, probes: 10 });
    expect(status.links[1].quality).toBeUndefined(); // an empty window: no figures
    expect(status.links[1].since).toEqual(new Date(1000));
    expect(status.links.map((l) => l.transitions)).toEqual([3, 7]);
    expect(status.rounds).toBe(42);
    expect(status.passive).toBe("stopped"); // on, but these functions started no watcher
    expect(JSON.parse(state).links[0]).toEqual({
      name: "isp1", status: "degraded", since: 2000, okRounds: 9, failedRounds: 0, lastAnswered: 2, targets: 1, transitions: 3,
      window: { sent: 10, answered: 8, rttUs: 912345, lossPermille: 200 },
    });
    expect(JSON.parse(state).links[1]).toEqual({
      name: "isp2", status: "down", since: 1000, okRounds: 0, failedRounds: 3, lastAnswered: 0, targets: 1, transitions: 7,
      window: { sent: 0, answered: 0, rttUs: 0, lossPermille: 0 },
    });
  });
});
