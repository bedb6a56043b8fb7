import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { planGateway } from "../../components/plan";
import { bundleFingerprint, bundleLineChanges, renderBundle } from "../../components/render";
import { loadSiteFile } from "../../components/site-file";
import { gateway } from "./fixtures";

const BUILTIN = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
const TARGETS = ["RETURN", "MARK", "CONNMARK", "SNAT", "MASQUERADE"];

/** iptables-restore text → { table: { chains, rules } }, failing on anything malformed. */
function parseRestore(text: string) {
  const tables: Record<string, { chains: string[]; rules: string[] }> = {};
  let current: string | undefined;
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("*")) {
      expect(current, "table opened before COMMIT").toBeUndefined();
      current = line.slice(1);
      tables[current] = { chains: [], rules: [] };
    } else if (line === "COMMIT") {
      expect(current).toBeDefined();
      current = undefined;
    } else if (line.startsWith(":")) {
      tables[current!].chains.push(line.slice(1).split(" ")[0]);
    } else {
      tables[current!].rules.push(line);
    }
  }
  expect(current, "missing COMMIT").toBeUndefined();
  return tables;
}

const jumpOf = (rule: string) => / -[jg] (\S+)/.exec(rule)?.[1];
const chainOf = (rule: string) => rule.split(" ")[1];

describe("iptables.rules", () => {
  const bundle = renderBundle(planGateway(gateway()));
  const tables = parseRestore(bundle["iptables.rules"]);

  it("declares only multiwan's own chains, so --noflush leaves every other chain alone", () => {
    for (const t of Object.values(tables)) for (const c of t.chains) expect(c).toMatch(/^MWAN-/);
  });

  it("touches built-in chains only to insert one jump each into our chains", () => {
    const hooks = Object.entries(tables).flatMap(([table, t]) =>
      t.rules.filter((r) => BUILTIN.includes(chainOf(r))).map((r) => `${table} ${r}`),
    );
    expect(hooks).toEqual(["mangle -I PREROUTING 1 -j MWAN-PRE", "mangle -I OUTPUT 1 -j MWAN-OUT", "nat -I POSTROUTING 1 -j MWAN-POST"]);
    const listed = bundle["iptables.hooks"].trim().split("\n").map((l) => l.replace("\t", " ").replace("-A ", "-I ").replace(/ -j/, " 1 -j"));
    expect(listed).toEqual(hooks);
  });

  it("appends only to declared chains and jumps only to declared chains or standard targets", () => {
    for (const t of Object.values(tables)) {
      for (const rule of t.rules.filter((r) => r.startsWith("-A"))) {
        expect(t.chains).toContain(chainOf(rule));
        const jump = jumpOf(rule)!;
        expect([...t.chains, ...TARGETS]).toContain(jump);
      }
    }
  });

  it("restores the connection mark first and returns for connections already classified", () => {
    const pre = tables.mangle.rules.filter((r) => chainOf(r) === "MWAN-PRE");
    expect(pre[0]).toBe("-A MWAN-PRE -m connmark ! --mark 0x0/0xff00 -j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff00");
    expect(pre[1]).toBe("-A MWAN-PRE -m mark ! --mark 0x0/0xff00 -j RETURN");
    expect(pre.at(-1)).toBe("-A MWAN-PRE -m mark ! --mark 0x0/0xff00 -j CONNMARK --save-mark --nfmask 0xff00 --ctmask 0xff00");
  });

  it("marks NEW connections only: every path into a MARK passes a --ctstate NEW match", () => {
    const mangle = tables.mangle.rules.filter((r) => r.startsWith("-A"));
    const intoClassify = mangle.filter((r) => jumpOf(r) === "MWAN-CLASSIFY");
    expect(intoClassify.length).toBeGreaterThan(0);
    for (const r of intoClassify) expect(r).toContain("--ctstate NEW");
    // The split's chains (MWAN-BALANCE*) and the links' mark chains are entered only from MWAN-CLASSIFY.
    const split = (chain: string) => /^MWAN-(BALANCE|MARK)/.test(chain);
    for (const r of mangle.filter((r) => split(jumpOf(r)!))) expect(split(chainOf(r)) || chainOf(r) === "MWAN-CLASSIFY", r).toBe(true);
    for (const r of mangle.filter((r) => jumpOf(r) === "MARK" && !split(chainOf(r)))) {
      expect(r).toMatch(/--ctstate NEW|-s \S+\/32/); // inbound stickiness, or a socket bound to a link address
    }
  });

  it("never balances LAN destinations, excluded networks, multicast, broadcast, or the gateway itself", () => {
    const b = renderBundle(planGateway(gateway((s) => (s.balance = { exclude: ["192.0.2.0/24"] }))));
    const classify = parseRestore(b["iptables.rules"]).mangle.rules.filter((r) => chainOf(r) === "MWAN-CLASSIFY");
    expect(classify.slice(0, 5)).toEqual([
      "-A MWAN-CLASSIFY -d 198.18.1.0/24 -j RETURN",
      "-A MWAN-CLASSIFY -d 192.0.2.0/24 -j RETURN",
      "-A MWAN-CLASSIFY -d 224.0.0.0/4 -j RETURN",
      "-A MWAN-CLASSIFY -d 255.255.255.255/32 -j RETURN",
      "-A MWAN-CLASSIFY -m addrtype --dst-type LOCAL -j RETURN",
    ]);
    expect(classify.at(-1)).toBe("-A MWAN-CLASSIFY -g MWAN-BALANCE");
  });

  it("balances only the selected ports when asked (seed 2)", () => {
    const b = renderBundle(planGateway(gateway((s) => (s.balance = { protocols: ["tcp"], ports: [22, 25, 80, 443] }))));
    const mangle = parseRestore(b["iptables.rules"]).mangle.rules;
    expect(mangle.filter((r) => chainOf(r) === "MWAN-CLASSIFY").at(-1)).toBe("-A MWAN-CLASSIFY -g MWAN-SELECT");
    expect(mangle.filter((r) => chainOf(r) === "MWAN-SELECT")).toEqual(["-A MWAN-SELECT -p tcp -m multiport --dports 22,25,80,443 -g MWAN-BALANCE"]);
  });

  it("NATs per link: SNAT to the address, MASQUERADE without", () => {
    expect(tables.nat.rules.filter((r) => r.startsWith("-A"))).toEqual([
      "-A MWAN-POST -s 198.18.1.0/24 -o wan1 -j SNAT --to-source 203.0.113.2",
      "-A MWAN-POST -s 198.18.1.0/24 -o wan2 -j MASQUERADE",
    ]);
  });

  it("carries the all-links-up variant", () => {
    const balance = tables.mangle.rules.filter((r) => /^MWAN-BALANCE(-\d+)?$/.test(chainOf(r)));
    expect(balance).toEqual(parseRestore(bundle["variants/isp1+isp2.rules"]).mangle.rules);
  });

  it("a link's mark chain only marks for that link", () => {
    expect(tables.mangle.rules.filter((r) => chainOf(r).startsWith("MWAN-MARK-"))).toEqual([
      "-A MWAN-MARK-1 -j MARK --set-xmark 0x100/0xff00",
      "-A MWAN-MARK-2 -j MARK --set-xmark 0x200/0xff00",
    ]);
  });
});

describe("the rest of the bundle", () => {
  const bundle = renderBundle(planGateway(gateway()));

  it("has every file of the contract and one variant per live-link set plus none", () => {
    expect(Object.keys(bundle).sort()).toEqual(
      [
        "apply.sh",
        "health.sh",
        "multiwan-health.service",
        "ip.batch",
        "ip.undo",
        "iptables.hooks",
        "iptables.rules",
        "manifest.json",
        "multiwan-restore.service",
        "passive.awk",
        "rt_tables",
        "sysctl.conf",
        "variants/isp1+isp2.rules",
        "variants/isp1.rules",
        "variants/isp2.rules",
        "variants/none.rules",
      ].sort(),
    );
  });

  it("variants only flush and fill the balancing chains, all of them the same set", () => {
    const b = renderBundle(planGateway(gateway((s) => ((s.gateways[0].links[0].weight = 188), (s.gateways[0].links[1].weight = 19)))));
    const declared = parseRestore(b["iptables.rules"]).mangle.chains.filter((c) => c.startsWith("MWAN-BALANCE"));
    expect(declared.length).toBeGreaterThan(1);
    for (const [name, text] of Object.entries(b).filter(([n]) => n.startsWith("variants/"))) {
      const t = parseRestore(text);
      expect(Object.keys(t), name).toEqual(["mangle"]);
      expect(t.mangle.chains, name).toEqual(declared);
      for (const r of t.mangle.rules) {
        expect(r).toMatch(/^-A MWAN-BALANCE(-\d+)? (-m statistic --mode nth --every \d+ --packet 0 -g MWAN-(BALANCE-\d+|MARK-\d+)|-j MARK --set-xmark 0x[0-9a-f]+\/0xff00|-g MWAN-BALANCE-\d+)$/);
      }
    }
  });

  it("ip.batch and rt_tables agree on tables", () => {
    expect(bundle["rt_tables"]).toContain("101\tmwan_isp1\n102\tmwan_isp2\n");
    expect(bundle["ip.batch"]).toContain("route replace default via 198.51.100.5 dev wan2 table 102\n");
  });

  it("sysctl.conf carries forwarding and src_valid_mark", () => {
    expect(bundle["sysctl.conf"]).toContain("net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.src_valid_mark = 1\n");
  });

  it.each(["apply.sh", "health.sh"])("%s is valid POSIX sh and shellcheck-clean", (script) => {
    const dir = mkdtempSync(join(tmpdir(), "mwt-render-"));
    try {
      writeFileSync(join(dir, script), bundle[script]);
      execFileSync("sh", ["-n", join(dir, script)]);
      execFileSync("shellcheck", ["-s", "sh", join(dir, script)]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("apply.sh defaults to the gateway's root", () => expect(bundle["apply.sh"]).toContain("root=${MULTIWAN_ROOT:-/}"));

  it("health.sh has the links, targets and thresholds baked in", () => {
    const b = renderBundle(planGateway(gateway((s) => {
      s.gateways[0].links[0].check = { targets: ["192.0.2.1", "198.51.100.1"], reliability: 2 };
      s.gateways[0].links[1].quality = { latencyMs: 200, lossPercent: 20, window: 5, flushConntrack: true };
      s.gateways[0].health = { interval: 0.2, timeout: 0.5, down: 4, up: 6, flushConntrack: false, metricsFile: "/srv/metrics/gw1.prom" };
    })));
    const h = b["health.sh"];
    // Each link's quality limits in µs and ‰; isp1 has none (window 0, nothing checked).
    expect(h).toContain(
      '  1) name=isp1 iface=wan1 mark=256 targets="192.0.2.1 198.51.100.1" count4=2 need4=2 need6=0 need=2 route="default via 203.0.113.1 dev wan1 table 101" route6=""\n' +
        "    qwin=0 qlat=0 qloss=-1 qrlat=0 qrloss=-1 qflush=false ;;\n" +
        '  2) name=isp2 iface=wan2 mark=512 targets="192.0.2.1" count4=1 need4=1 need6=0 need=1 route="default via 198.51.100.5 dev wan2 table 102" route6=""\n' +
        "    qwin=5 qlat=200000 qloss=200 qrlat=160000 qrloss=100 qflush=true ;;\n",
    );
    for (const line of ["interval=0.2", "timeout=0.5", "down_after=4", "up_after=6", "flush_conntrack=false", "mask=65280", 'links="1 2 "', 'metrics="$root/srv/metrics/gw1.prom"']) {
      expect(h).toContain(`\n${line}\n`);
    }
  });

  it("health.sh writes the metrics file under the gateway's root, or none", () => {
    const metricsLine = (health: object) => renderBundle(planGateway(gateway((s) => (s.health = health))))["health.sh"].match(/^metrics=.*$/m)?.[0];
    expect(metricsLine({})).toBe('metrics="$root/var/lib/prometheus/node-exporter/multiwan.prom"');
    expect(metricsLine({ metricsFile: false })).toBe('metrics=""');
  });

  it.each([
    ["multiwan-restore.service", "ExecStart=/bin/sh /srv/gw1/etc/multiwan/apply.sh restore\n"],
    ["multiwan-health.service", "ExecStart=/bin/sh /srv/gw1/etc/multiwan/health.sh\n"],
  ])("%s passes systemd-analyze verify and runs the installed script", (unit, execStart) => {
    const b = renderBundle(planGateway(gateway((s) => (s.gateways[0].root = "/srv/gw1"))));
    expect(b[unit]).toContain(execStart);
    expect(b[unit]).toContain("Environment=MULTIWAN_ROOT=/srv/gw1\n");
    const dir = mkdtempSync(join(tmpdir(), "mwt-render-"));
    try {
      writeFileSync(join(dir, unit), b[unit]);
      execFileSync("systemd-analyze", ["verify", join(dir, unit)], { stdio: "pipe" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("systemd restarts a killed health daemon, after the rules are restored", () => {
    const unit = bundle["multiwan-health.service"];
    expect(unit).toContain("\nRestart=always\n");
    expect(unit).toMatch(/\nRestartSec=\d+\n/);
    expect(unit).toMatch(/\nAfter=.*multiwan-restore\.service/);
    expect(unit).toContain("\nWantedBy=multi-user.target\n");
  });

  it("nothing is HTML-escaped", () => {
    for (const text of Object.values(bundle)) expect(text).not.toMatch(/&(amp|lt|gt|quot|#x27|#39|#x2F|#x3D);/);
    expect(bundle["apply.sh"]).toContain("&&");
  });

  it("the fingerprint is stable and changes with any rule", () => {
    expect(bundleFingerprint(renderBundle(planGateway(gateway())))).toBe(bundleFingerprint(bundle));
    const heavier = renderBundle(planGateway(gateway((s) => (s.gateways[0].links[1].weight = 2))));
    expect(bundleFingerprint(heavier)).not.toBe(bundleFingerprint(bundle));
  });
});

describe("the shipped examples", () => {
  it.each(["seed-two-links", "seed-ppp-ports", "fibre-lte-backup", "two-fibres-lte", "voip-steady-line", "guest-one-line", "sticky-logins", "dual-stack"])("%s renders as reviewed", async (example) => {
    const site = loadSiteFile(join(__dirname, "..", "..", "examples", `Pulumi.${example}.yaml`));
    for (const gw of site.gateways) {
      const plan = planGateway(gw);
      const bundle = renderBundle(plan);
      for (const f of plan.families) {
        await expect(bundle[f.rulesFile]).toMatchFileSnapshot(`__snapshots__/${example}.${gw.name}.${f.rulesFile}`);
        await expect(bundle[f.batchFile]).toMatchFileSnapshot(`__snapshots__/${example}.${gw.name}.${f.batchFile}`);
      }
    }
  });
});

describe("bundleLineChanges", () => {
  it("counts the lines a change adds and removes, file by file", () => {
    const before = { "a.rules": "keep\nold\nkeep", "gone.rules": "x\ny" };
    const after = { "a.rules": "keep\nkeep\nnew\nnew", "added.rules": "z" };
    expect(bundleLineChanges(before, after)).toEqual({ added: 3, removed: 3 });
    expect(bundleLineChanges(before, before)).toEqual({ added: 0, removed: 0 });
  });

  it("sees a weight change as a few rule lines, not a whole bundle", () => {
    const gw = gateway();
    const heavier = { ...gw, links: gw.links.map((l, i) => (i === 0 ? { ...l, weight: l.weight + 1 } : l)) };
    const { added, removed } = bundleLineChanges(renderBundle(planGateway(gw)), renderBundle(planGateway(heavier)));
    expect(added).toBeGreaterThan(0);
    expect(added + removed).toBeLessThan(60);
  });
});
