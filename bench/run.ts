// `npm run bench`: the figures users are promised, measured. Needs root (network namespaces).
//   1. shares of 2000 real new connections through the lab for 3:1 and 5:3:2 (and, for
//      comparison, the seed recipe's mark-guarded nth rules on the same lab);
//   2. a failover timeline: uplink 1 breaks upstream, then comes back, under 20 new connections/s
//      (printed per second and drawn as docs/failover-timeline.svg);
//   3. kernel multipath on the same lab, for comparison: its split (L3 and L4 hash) and an outage;
//   4. `multiwan drift` over 20 SSH-managed namespace gateways (target: under 5 s);
//   5. time to validate, plan and render the bundles of 1000 gateways;
//   6. new-connection capacity of a namespace gateway, plain NAT against multiwan (bench/newconn.ts);
//   7. the health daemon: processes and CPU per probe round, and failover per detection path
//      (bench/health.ts).
import { parseSite } from "../components/config";
import { planGateway } from "../components/plan";
import { renderBundle } from "../components/render";
import { withLab, type Lab } from "../lab/lab";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { withManagedGateways } from "../lab/managed";
import { managedGateway } from "../lab/site";
import { deploy, labSite, unmarkedConnections } from "../lab/deploy";
import { runFailover } from "../lab/failover";
import { timelineSvg, timelineTable } from "../lab/timeline";
import { newConnections } from "./newconn";
import { daemonCost, detection } from "./health";

const CONNECTIONS = 2000;
const pct = (x: number) => `${(x * 100).toFixed(2)} %`;

/** `markMask` null: the setup marks nothing, so there is no unmarked count to report. */
async function measure(lab: Lab, label: string, weights: number[], markMask?: number | null, family: 4 | 6 = 4) {
  const results = await lab.openConnections(CONNECTIONS, { concurrency: 20, family });
  const shares = lab.shares(results);
  const total = weights.reduce((a, b) => a + b, 0);
  const failed = results.filter((r) => !r.ok).length;
  const server = family === 6 ? lab.serverAddress6 : lab.serverAddress;
  const unmarked = markMask === null ? "" : `, ${await unmarkedConnections(lab, server, markMask)} unmarked`;
  console.log(`\n${label}: ${CONNECTIONS} new connections, ${failed} failed${unmarked}`);
  lab.links.forEach((l, i) => {
    const want = weights[i] / total;
    const got = shares[l.name];
    console.log(`  ${l.name}  weight ${weights[i]}  expected ${pct(want)}  measured ${pct(got)}  (${((got - want) * 100).toFixed(2)} pts)`);
  });
}

/**
 * The seed's recipe, with its missing `-t mangle` added: four mark-guarded nth rules for 3:1.
 * As written its link tables lack the LAN route, so replies to the LAN leave through a WAN;
 * `lanRoutes` adds it, to measure the split on its own.
 */
async function applySeedRecipe(lab: Lab, lanRoutes: boolean) {
  const [l1, l2] = lab.links;
  const nth = (packet: number, mark: number) =>
    `iptables -t mangle -A PREROUTING -m mark --mark 0x0 -m statistic --mode nth --every 4 --packet ${packet} -j MARK --set-mark ${mark}`;
  await lab.sh(
    lab.ns.gw,
    [
      "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.src_valid_mark=1",
      "iptables -t mangle -A PREROUTING -j CONNMARK --restore-mark",
      nth(0, 1), nth(1, 2), nth(2, 1), nth(3, 1),
      "iptables -t mangle -A POSTROUTING -j CONNMARK --save-mark",
      `ip route add default via ${l1.gateway} table 1`,
      `ip route add default via ${l2.gateway} table 2`,
      "ip rule add fwmark 1 lookup 1",
      "ip rule add fwmark 2 lookup 2",
      `iptables -t nat -A POSTROUTING -m mark --mark 1 -j SNAT --to-source ${l1.address}`,
      `iptables -t nat -A POSTROUTING -m mark --mark 2 -j SNAT --to-source ${l2.address}`,
      ...(lanRoutes ? [1, 2].map((t) => `ip route add ${lab.lanInfo.network} dev ${lab.lanInfo.interface} table ${t}`) : []),
    ].join(" && "),
    { check: true },
  );
}

/** 20 new connections/s (1 s connect timeout) for 25 s; isp1 breaks upstream at 5 s, returns at 15 s. */
async function failoverTimeline() {
  await withLab({ links: 2 }, async (lab) => {
    await deploy(lab, labSite(lab, { weights: [1, 1] }), { daemon: true });
    await new Promise((r) => setTimeout(r, 1500));
    const run = await runFailover(lab, { link: "isp1", breakAt: 5, restoreAt: 15, seconds: 25, ratePerSec: 20 });
    const links = lab.links.map((l) => l.name);
    console.log(`\nfailover (default health: interval 0.5 s, timeout 1 s, down 3, up 5): isp1 breaks at 5 s, returns at 15 s`);
    console.log(`  ${run.failed} of ${run.results.length} connections failed; the last failed one started ${run.lastFailAfterBreak.toFixed(2)} s after the break`);
    console.log(`  daemon: ${run.transitions.map((t) => `${t.link} ${t.status} at ${t.at.toFixed(2)} s`).join(", ")}`);
    console.log(timelineTable(run.bins, links).replace(/^/gm, "  "));
    const svg = timelineSvg(run.bins, links, "multiwan failover: new connections per second, by uplink", [
      { second: 5, label: "isp1 breaks" },
      { second: 15, label: "isp1 returns" },
    ]);
    writeFileSync(join(__dirname, "..", "docs", "failover-timeline.svg"), svg);
  });
}

/**
 * Kernel multipath, the no-daemon alternative: one default route with weighted next hops, hashed
 * per flow (L3: addresses only, the default; L4: with ports), SNAT per uplink. No health checks.
 */
async function kernelMultipath() {
  for (const policy of [0, 1]) {
    await withLab({ links: 2 }, async (lab) => {
      const [l1, l2] = lab.links;
      await lab.sh(
        lab.ns.gw,
        [
          `sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=${policy}`,
          `ip route replace default nexthop via ${l1.gateway} dev ${l1.interface} weight 3 nexthop via ${l2.gateway} dev ${l2.interface} weight 1`,
          `iptables -t nat -A POSTROUTING -o ${l1.interface} -j SNAT --to-source ${l1.address}`,
          `iptables -t nat -A POSTROUTING -o ${l2.interface} -j SNAT --to-source ${l2.address}`,
        ].join(" && "),
        { check: true },
      );
      await measure(lab, `kernel multipath (hash policy ${policy}: ${policy ? "L4" : "L3"}), 2 links 3:1`, [3, 1], null);
      if (!policy) return;
      const run = await runFailover(lab, { link: "isp1", breakAt: 3, restoreAt: 13, seconds: 16, ratePerSec: 20 });
      const during = run.results.filter((r) => r.startedAt - run.results[0].startedAt >= 3000 && r.startedAt - run.results[0].startedAt < 12000);
      console.log(`  isp1 broken upstream for 10 s at 20 conn/s: ${during.filter((r) => !r.ok).length} of ${during.length} connections started in seconds 3-12 failed (nothing notices)`);
    });
  }
}

async function driftFleet(count: number) {
  await withManagedGateways(Array(count).fill("port"), async (gws, key) => {
    const scratch = mkdtempSync(join(tmpdir(), "mwt-bench-"));
    try {
      const gateways = [];
      for (const [i, g] of gws.entries()) {
        const gw = managedGateway(g, `gw${i + 1}`, [3, 1]);
        await deploy(g.lab, { gateways: [gw] }, { daemon: true });
        gateways.push(gw);
      }
      writeFileSync(join(scratch, "site.yaml"), stringify({ gateways }));
      writeFileSync(join(scratch, "key"), key.privateKey, { mode: 0o600 });
      const start = performance.now();
      const r = spawnSync(process.execPath, [join(__dirname, "..", "bin", "multiwan.js"), "drift", "--config", join(scratch, "site.yaml"), "--key", join(scratch, "key"), "--json"], { encoding: "utf8" });
      const ms = performance.now() - start;
      const rows: { status: string }[] = JSON.parse(r.stdout);
      const inSync = rows.filter((row) => row.status === "in-sync").length;
      console.log(`\ndrift: multiwan drift over ${count} namespace gateways (SSH, 20 at once): ${(ms / 1000).toFixed(2)} s wall, exit ${r.status}, ${inSync}/${rows.length} in sync`);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
}

function renderFleet(gateways: number) {
  const site = {
    gateways: Array.from({ length: gateways }, (_, i) => ({
      name: `gw${i}`,
      connection: { host: `gw${i}.example.net`, hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIABrfGt9wZ2pFlXNancn1sg8tHkT224ufhuW9vHs4qLQ" },
      lan: { interfaces: ["lan0"], networks: [`198.18.${i % 256}.0/24`] },
      links: [3, 2, 1].map((weight, l) => ({
        name: `isp${l + 1}`,
        interface: `wan${l + 1}`,
        gateway: `203.0.113.${l * 4 + 1}`,
        address: `203.0.113.${l * 4 + 2}/30`,
        weight,
        check: { targets: ["192.0.2.1", "198.51.100.1"] },
      })),
    })),
  };
  const start = performance.now();
  let files = 0;
  for (const gw of parseSite(site).gateways) files += Object.keys(renderBundle(planGateway(gw))).length;
  const ms = performance.now() - start;
  console.log(`\nrender: ${gateways} gateways (3 links each), ${files} files in ${ms.toFixed(0)} ms (${(ms / gateways).toFixed(2)} ms per gateway)`);
}

const SECTIONS: Record<string, () => Promise<void> | void> = {
  async shares() {
    await withLab({ links: 2 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [3, 1] }));
      await measure(lab, "multiwan, 2 links 3:1", [3, 1]);
    });
    await withLab({ links: 3 }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [5, 3, 2] }));
      await measure(lab, "multiwan, 3 links 5:3:2", [5, 3, 2]);
    });
    await withLab({ links: 2, ipv6: true }, async (lab) => {
      await deploy(lab, labSite(lab, { weights: [3, 1], ipv6: { nat6: "npt" } }));
      await measure(lab, "multiwan dual stack, 2 links 3:1, IPv6 (npt)", [3, 1], undefined, 6);
      await measure(lab, "multiwan dual stack, 2 links 3:1, IPv4", [3, 1]);
    });
  },
  async seed() {
    for (const lanRoutes of [false, true]) {
      await withLab({ links: 2 }, async (lab) => {
        await applySeedRecipe(lab, lanRoutes);
        await measure(lab, `seed recipe${lanRoutes ? " + LAN routes in its tables" : " as written"}, 2 links 3:1`, [3, 1], 0xffffffff);
      });
    }
  },
  failover: failoverTimeline,
  multipath: kernelMultipath,
  drift: () => driftFleet(20),
  render: () => renderFleet(1000),
  newconn: newConnections,
  cost: daemonCost,
  detection,
};

/** `npm run bench` runs every section; `npm run bench -- drift failover` only those. */
async function main() {
  if (process.getuid?.() !== 0) throw new Error("npm run bench needs root: it builds network namespaces");
  const wanted = process.argv.slice(2);
  for (const name of wanted.length ? wanted : Object.keys(SECTIONS)) {
    if (!SECTIONS[name]) throw new Error(`unknown section ${name} (${Object.keys(SECTIONS).join(", ")})`);
    await SECTIONS[name]();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
