// `multiwan status` without a network: the remote command run by a local shell against a scratch
// root and a fake conntrack, parsing, the table and exit codes, and an unreachable gateway.
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { utils } from "ssh2";
import { afterAll, describe, expect, it } from "vitest";
import { planGateway } from "../../components/plan";
import { renderBundle, type Bundle } from "../../components/render";
import { gatewayStatus, parseStatus, staleAfterMs, statusCommand, statusLinks, type GatewayStatus } from "../../components/status";
import { age, statusExitCode, statusTable, type StatusRow } from "../../cli/status";
import { gateway } from "./fixtures";

/** The fixture gateway's bundle, installed under `root`. */
const bundleAt = (root: string) => renderBundle(planGateway(gateway((s) => (s.gateways[0].root = root))));
const files = bundleAt("/");
/** `files` with its manifest edited. */
const withManifest = (edit: (m: any) => void): Bundle => {
  const m = JSON.parse(files["manifest.json"]);
  edit(m);
  return { ...files, "manifest.json": JSON.stringify(m) };
};
const scratch = mkdtempSync(join(tmpdir(), "mwt-status-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const T0 = Date.UTC(2026, 10, 22, 4, 10, 3);
const STATE = {
  gateway: "gw1",
  updated: T0 + 300_000,
  variant: "isp1",
  links: [
    { name: "isp1", status: "up", since: T0, okRounds: 12, failedRounds: 0, lastAnswered: 1, targets: 1, transitions: 4 },
    { name: "isp2", status: "down", since: T0 + 280_000, okRounds: 0, failedRounds: 9, lastAnswered: 0, targets: 1 },
  ],
};

/** Status command output: a running daemon with STATE, written 1 s before the gateway's clock, sysctls as needed. */
function probeOutput(o: { daemon?: string; state?: object | null; clock?: number | string; sysctl?: string[] } = {}): string {
  const state = o.state === undefined ? STATE : o.state;
  return [
    "@@multiwan@@ daemon", o.daemon ?? "active",
    "@@multiwan@@ state", ...(state ? [JSON.stringify(state)] : []),
    "@@multiwan@@ clock", String(o.clock ?? STATE.updated + 1000),
    "@@multiwan@@ sysctl", ...(o.sysctl ?? ["net.ipv4.ip_forward = 1", "net.ipv4.conf.all.src_valid_mark = 1"]),
    "@@multiwan@@ conntrack", "unavailable",
  ].join("\n");
}

const CONNTRACK = [
  "tcp      6 431999 ESTABLISHED src=198.18.1.10 dst=192.0.2.10 sport=40000 dport=80 src=192.0.2.10 dst=203.0.113.2 sport=80 dport=40000 [ASSURED] mark=256 use=1",
  "tcp      6 431999 ESTABLISHED src=198.18.1.11 dst=192.0.2.10 sport=40001 dport=80 src=192.0.2.10 dst=203.0.113.2 sport=80 dport=40001 [ASSURED] mark=257 use=1",
  "tcp      6 431999 ESTABLISHED src=198.18.1.12 dst=192.0.2.10 sport=40002 dport=443 src=192.0.2.10 dst=203.0.113.2 sport=443 dport=40002 [ASSURED] mark=256 use=1",
  "tcp      6 100 TIME_WAIT src=198.18.1.10 dst=192.0.2.10 sport=39999 dport=80 src=192.0.2.10 dst=203.0.113.2 sport=80 dport=39999 [ASSURED] mark=256 use=1",
  "udp      17 29 src=198.18.1.10 dst=192.0.2.10 sport=5000 dport=5001 src=192.0.2.10 dst=198.51.100.6 sport=5001 dport=5000 mark=512 use=1",
  "icmp     1 29 src=203.0.113.2 dst=192.0.2.1 type=8 code=0 id=7 src=192.0.2.1 dst=203.0.113.2 type=0 code=0 id=7 mark=256 use=1",
  // conntrack -L lists both families: an IPv6 connection counts, an IPv6 probe does not.
  "tcp      6 431999 ESTABLISHED src=2001:db8:10::10 dst=2001:db8:5e::10 sport=40003 dport=443 src=2001:db8:5e::10 dst=2001:db8:b2:2::10 sport=443 dport=40003 [ASSURED] mark=512 use=1",
  "icmpv6   58 29 src=2001:db8:1::2 dst=2001:db8:5e::1 type=128 code=0 id=8 src=2001:db8:5e::1 dst=2001:db8:1::2 type=129 code=0 id=8 mark=256 use=1",
  "tcp      6 7200 ESTABLISHED src=198.18.200.1 dst=198.18.200.2 sport=50000 dport=22 src=198.18.200.2 dst=198.18.200.1 sport=22 dport=50000 [ASSURED] mark=0 use=1",
].join("\n");

/** Run the remote command with a local shell: `root` holds the daemon's files, `conntrack` and `sysctl` are faked. */
function runLocally(root: string, conntrack: string | null): string {
  const bin = join(scratch, `bin-${conntrack === null ? "none" : "fake"}`);
  mkdirSync(bin, { recursive: true });
  if (conntrack !== null) {
    writeFileSync(join(bin, "conntrack"), `#!/bin/sh\n[ "$1" = -L ] || exit 1\ncat <<'EOF'\n${conntrack}\nEOF\necho 'conntrack v1.4.7 (conntrack-tools): 7 flow entries have been shown.' >&2\n`);
    chmodSync(join(bin, "conntrack"), 0o755);
    // What a gateway prints for the keys asked, all set as the rules need.
    writeFileSync(join(bin, "sysctl"), `#!/bin/sh\nfor k in "$@"; do echo "$k = 1"; done\n`);
    chmodSync(join(bin, "sysctl"), 0o755);
  }
  // Without conntrack on PATH: only the basics a shell needs.
  const path = conntrack === null ? `${bin}:/usr/bin:/bin` : `${bin}:${process.env.PATH}`;
  return execFileSync("sh", ["-c", statusCommand({ files: bundleAt(root) })], { encoding: "utf8", env: { PATH: path } });
}

describe("status command and parsing", () => {
  it("takes link names, mark bytes and tiers from the bundle's manifest", () => {
    expect(statusLinks(files)).toEqual([
      { name: "isp1", markByte: 1, tier: 1 },
      { name: "isp2", markByte: 2, tier: 1 },
    ]);
  });

  it("reads the daemon's state and counts open connections per link mark, without ICMP or closed TCP", () => {
    const root = join(scratch, "gw-root");
    mkdirSync(join(root, "run", "multiwan"), { recursive: true });
    writeFileSync(join(root, "run", "multiwan", "state.json"), JSON.stringify(STATE) + "\n");
    const status = parseStatus(runLocally(`${root}/`, CONNTRACK), files);
    expect(status).toEqual({
      reachable: true,
      daemon: "stopped", // no pid file: nothing runs health.sh here
      variant: "isp1",
      updated: new Date(T0 + 300_000),
      // Nothing watches the links: their last states are not reported as the links' states now.
      // The variant in place (isp1) still decides which link new connections take.
      links: [
        { name: "isp1", status: "unknown", since: new Date(T0), connections: 3, share: 0.6, tier: 1, carrying: true, transitions: 4 },
        // A state without the count (a daemon from before it): not known, not 0.
        { name: "isp2", status: "unknown", since: new Date(T0 + 280_000), connections: 2, share: 0.4, tier: 1, carrying: false, transitions: null },
      ],
      total: 5,
      other: 1,
      stateAgeMs: expect.any(Number), // the gateway's clock (here: this machine's) against the state's stamp
      problems: [],
    } satisfies GatewayStatus);
  });

  it("without a state file or conntrack: links unknown, connections null", () => {
    const root = join(scratch, "empty-root");
    mkdirSync(root, { recursive: true });
    const status = parseStatus(runLocally(root, null), files);
    expect(status.links).toEqual([
      { name: "isp1", status: "unknown", since: null, connections: null, share: 0, tier: 1, carrying: null, transitions: null },
      { name: "isp2", status: "unknown", since: null, connections: null, share: 0, tier: 1, carrying: null, transitions: null },
    ]);
    expect(status.updated).toBeNull();
    expect(status.variant).toBeUndefined();
  });

  it("says when passive detection is not watching, and why, and nothing while it watches or is off", () => {
    const passive = (p: string | undefined) => parseStatus(probeOutput({ state: { ...STATE, passive: p } }), files);
    expect(passive("watching")).toMatchObject({ passive: "watching", problems: [] });
    expect(passive("off")).toMatchObject({ passive: "off", problems: [] });
    expect(passive("stopped").problems).toEqual(["passive detection stopped (its conntrack event watcher ended; the daemon starts it again within 30 s): failover waits for the probes"]);
    expect(passive("unavailable").problems).toEqual(["passive detection unavailable: the gateway has no conntrack command: failover waits for the probes"]);
    expect(passive("bogus")).not.toHaveProperty("passive"); // from a gateway: only what we know
    expect(passive(undefined)).not.toHaveProperty("passive"); // a daemon from before passive detection
  });

  it("parses a running daemon and the systemd answer", () => {
    expect(parseStatus(probeOutput(), files).daemon).toBe("running");
    expect(parseStatus(probeOutput({ daemon: "failed" }), files).daemon).toBe("stopped");
    expect(parseStatus("", files).daemon).toBe("unknown");
  });

  it("reads the sysctls the rules need from the manifest and names each one that is off, with its effect", () => {
    expect(statusCommand({ files })).toContain("sysctl net.ipv4.ip_forward net.ipv4.conf.all.src_valid_mark");
    const status = parseStatus(probeOutput({ sysctl: ["net.ipv4.ip_forward = 0"] }), files);
    expect(status.problems).toEqual([
      "net.ipv4.ip_forward is 0 (the rules need 1): the LAN is offline (the gateway forwards nothing)",
      "net.ipv4.conf.all.src_valid_mark could not be read (the rules need 1): rp_filter checks replies without their mark and may drop every reply on a non-default link",
    ]);
    const row = { gateway: "gw1", ...status };
    expect(statusExitCode([row])).toBe(2);
    expect(statusTable([row])).toContain("\n  gw1: net.ipv4.ip_forward is 0 (the rules need 1): the LAN is offline");
  });

  it("calls a running daemon stale when its state is older than a few rounds on the gateway's clock", () => {
    const interval = 0.5; // the fixture's default
    const limit = staleAfterMs(interval);
    expect(limit).toBe(2500);
    const at = (ageMs: number) => parseStatus(probeOutput({ clock: STATE.updated + ageMs }), files);
    expect(at(limit)).toMatchObject({ daemon: "running", stateAgeMs: limit, problems: [], links: [{ status: "up" }, { status: "down" }] });
    const frozen = at(40_000);
    expect(frozen).toMatchObject({ daemon: "stale", stateAgeMs: 40_000, links: [{ status: "unknown" }, { status: "unknown" }] });
    expect(frozen.problems).toEqual(["health daemon stale: state written 40s ago (interval 0.5 s)"]);
    expect(statusExitCode([{ gateway: "gw1", ...frozen }])).toBe(2);
    expect(statusTable([{ gateway: "gw1", ...frozen }])).toContain("  gw1: health daemon stale: state written 40s ago (interval 0.5 s)");
    // Our clock plays no part: this gateway's clock is days behind ours, its state fresh on it.
    expect(at(1000).problems).toEqual([]);
    expect(staleAfterMs(0.1)).toBe(2000); // the floor: a slow round is not a frozen daemon
  });

  it("never calls a running daemon alive when it cannot tell", () => {
    expect(parseStatus(probeOutput({ clock: "1700000000%3N" }), files)).toMatchObject({
      daemon: "running",
      problems: ["cannot tell whether the health daemon is alive: the gateway's clock could not be read"],
    });
    expect(parseStatus(probeOutput({ state: null }), files)).toMatchObject({
      daemon: "stale",
      problems: ["health daemon stale: it runs but has written no state (interval 0.5 s)"],
    });
  });

  it("reads a degraded link and the figures of its quality window", () => {
    const window = (sent: unknown, answered: unknown, rttUs: unknown, lossPermille: unknown) => ({ sent, answered, rttUs, lossPermille });
    const state = {
      ...STATE,
      variant: "isp2",
      links: [
        { ...STATE.links[0], status: "degraded", transitions: 3, window: window(10, 8, 912_345, 200) },
        { ...STATE.links[1], status: "up", transitions: 2, window: window(10, 10, 24_500, 0) },
      ],
    };
    const status = parseStatus(probeOutput({ state }), files);
    expect(status.links).toMatchObject([
      { name: "isp1", status: "degraded", carrying: false, quality: { rttMs: 912.345, lossPercent: 20, probes: 10 } },
      { name: "isp2", status: "up", carrying: true, quality: { rttMs: 24.5, lossPercent: 0, probes: 10 } },
    ]);
    // An empty window (quality off, or just cleared) or one of another shape: no figures.
    const without = (w: object | undefined) => parseStatus(probeOutput({ state: { ...STATE, links: [{ ...STATE.links[0], window: w }, STATE.links[1]] } }), files).links[0];
    for (const w of [undefined, window(0, 0, 0, 0), window("10", 8, 912_345, 200), window(10, 8, -1, 200), window(10, 8.5, 1, 200)]) {
      expect(without(w), JSON.stringify(w)).not.toHaveProperty("quality");
    }
    // Nothing answered in the window: no round trip to show.
    expect(without(window(6, 0, 0, 1000)).quality).toEqual({ rttMs: null, lossPercent: 100, probes: 6 });
  });

  it("counts connections by the manifest's mark mask", () => {
    const out = (mask: string) => parseStatus(`@@multiwan@@ conntrack\n256 2\n65792 3\n512 1\n`, withManifest((m) => (m.markMask = mask)));
    expect(out("0xff00").links.map((l) => l.connections)).toEqual([5, 1]); // 65792 = 0x10100: byte 1 under 0xff00
    expect(out("0xff0000")).toMatchObject({ links: [{ connections: 3 }, { connections: 0 }], other: 3 });
  });

  it("puts nothing but the manifest's checked paths into the command", () => {
    expect(statusCommand({ files })).toContain("cat /run/multiwan/state.json");
    expect(statusCommand({ files: bundleAt("/srv/gw1/") })).toContain("cat /srv/gw1/run/multiwan/state.json");
    // The last one made the former root pattern backtrack for hours.
    for (const root of ["/x; reboot", "relative", "/a/../etc", "/$(id)", "/a b", `/${"a".repeat(40)}!`]) {
      expect(() => statusCommand({ files: withManifest((m) => (m.root = root)) }), root).toThrow(/invalid manifest.json: root/);
      expect(() => statusCommand({ files: withManifest((m) => (m.paths.stateFile = root)) }), root).toThrow(/invalid manifest.json: paths.stateFile/);
    }
  });
});

describe("gatewayStatus", () => {
  it("reports an unreachable gateway with the SSH error instead of throwing", async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const privateKey = utils.generateKeyPairSync("ed25519").private;
    const status = await gatewayStatus({ host: "127.0.0.1", port, user: "root", privateKey, connectTimeout: 2 }, { files });
    expect(status.reachable).toBe(false);
    expect(status.error).toMatch(/^127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    expect(status.links.map((l) => [l.name, l.status])).toEqual([["isp1", "unknown"], ["isp2", "unknown"]]);
    // A key that does not parse is the gateway's answer too, not an exception.
    const badKey = await gatewayStatus({ host: "127.0.0.1", port, user: "root", privateKey: "not a key" }, { files });
    expect(badKey).toMatchObject({ reachable: false, error: expect.stringMatching(/^127\.0\.0\.1: Cannot parse privateKey/) });
  });

  it("refuses a bad root without connecting", async () => {
    const status = await gatewayStatus({ host: "127.0.0.1", port: 1, user: "root", privateKey: "unused" }, { files: withManifest((m) => (m.root = "/x;y")) });
    expect(status).toMatchObject({ reachable: false, error: expect.stringMatching(/invalid manifest.json: root/) });
  });

  it("says so, without connecting, when the pushed bundle has no manifest (an older multiwan pushed it)", async () => {
    const { "manifest.json": _, ...old } = files;
    const status = await gatewayStatus({ host: "127.0.0.1", port: 1, user: "root", privateKey: "unused" }, { files: old });
    expect(status).toMatchObject({ reachable: false, links: [], error: "127.0.0.1: the pushed bundle has no manifest.json (an older multiwan pushed it): push it again (pulumi up) before checking it" });
  });
});

const up = (name: string, connections: number, share: number, since = T0) =>
  ({ name, status: "up" as const, since: new Date(since), connections, share, tier: 1, carrying: true as boolean | null, transitions: 0 });
const healthy: StatusRow = {
  stack: "site1",
  gateway: "gw1",
  reachable: true,
  daemon: "running",
  variant: "isp1+isp2",
  passive: "watching",
  updated: new Date(T0 + 299_000),
  links: [up("isp1", 300, 0.75), up("isp2", 100, 0.25, T0 - 3 * 3600_000 - 60_000)],
  total: 400,
  other: 2,
  stateAgeMs: 1000,
  problems: [],
};

describe("status table and exit codes", () => {
  const now = new Date(T0 + 300_000);

  it("one line per link, an unreachable gateway as one line, and a note per gateway", () => {
    const away: StatusRow = { stack: "site2", gateway: "gw9", reachable: false, error: "198.51.100.9:22: connect ETIMEDOUT", daemon: "unknown", updated: null, stateAgeMs: null, links: [], total: 0, other: 0, problems: [] };
    expect(statusTable([healthy, away], now)).toBe(
      [
        "STACK  GATEWAY  LINK  TIER  STATE        CARRIES  SINCE                        CONNS  SHARE",
        "site1  gw1      isp1  1     up           yes      2026-11-22 04:10:03Z (5m)    300    75.0 %",
        "site1  gw1      isp2  1     up           yes      2026-11-22 01:09:03Z (3h6m)  100    25.0 %",
        "site2  gw9      -           unreachable",
        "",
        "  gw1: health daemon running, balancing over isp1+isp2, passive detection watching, state written 1s ago, 2 other connections",
        "  gw9: unreachable: 198.51.100.9:22: connect ETIMEDOUT",
      ].join("\n"),
    );
  });

  it("without stacks there is no STACK column; no conntrack shows as -", () => {
    const { stack: _, ...row } = healthy;
    const table = statusTable([{ ...row, links: [{ ...row.links[0], connections: null }] }], now);
    expect(table.split("\n")[0]).toMatch(/^GATEWAY  LINK  TIER  STATE  CARRIES  SINCE\s+CONNS  SHARE$/);
    expect(table).toMatch(/^gw1\s+isp1\s+1\s+up\s+yes\s+2026-11-22 04:10:03Z \(5m\)\s+-\s+-$/m);
    expect(table).toContain("conntrack not installed");
  });

  it("shows a backup that is up and waiting as such, and exits 0 for it", () => {
    const lte = { ...up("lte", 0, 0), tier: 2, carrying: false };
    const waiting: StatusRow = { ...healthy, links: [...healthy.links, lte] };
    const table = statusTable([waiting], now);
    expect(table).toMatch(/^site1\s+gw1\s+lte\s+2\s+up\s+no\s+2026-11-22 04:10:03Z \(5m\)\s+0\s+0\.0 %$/m);
    expect(table).toMatch(/^site1\s+gw1\s+isp1\s+1\s+up\s+yes\s/m);
    expect(statusExitCode([waiting])).toBe(0);
    // A down backup is a link down, whatever its tier.
    expect(statusExitCode([{ ...waiting, links: [...healthy.links, { ...lte, status: "down" }] }])).toBe(2);
    // No variant recorded: whether a link carries is not known.
    expect(statusTable([{ ...waiting, links: [{ ...lte, carrying: null }] }], now)).toMatch(/^site1\s+gw1\s+lte\s+2\s+up\s+-\s+2026/m);
  });

  it("takes whether a link carries from the variant in place, by the manifest", () => {
    const backup = renderBundle(planGateway(gateway((s) => (s.gateways[0].links[1].tier = 2))));
    const state = (variant: string) => probeOutput({ state: { ...STATE, variant, links: STATE.links.map((l) => ({ ...l, status: "up" })) } });
    expect(parseStatus(state("isp1+isp2"), backup).links.map((l) => [l.name, l.tier, l.carrying])).toEqual([["isp1", 1, true], ["isp2", 2, false]]);
    expect(parseStatus(state("isp2"), backup).links.map((l) => l.carrying)).toEqual([false, true]);
    // A variant the bundle does not have (another bundle's daemon): not known.
    expect(parseStatus(state("isp9"), backup).links.map((l) => l.carrying)).toEqual([null, null]);
  });

  it("shows a degraded link with the figures that degraded it, and exits 2 for it", () => {
    const slow = { ...healthy.links[0], status: "degraded" as const, carrying: false, quality: { rttMs: 912.345, lossPercent: 20, probes: 10 } };
    const row: StatusRow = { ...healthy, variant: "isp2", links: [slow, healthy.links[1]] };
    const table = statusTable([row], now);
    expect(table).toMatch(/^site1\s+gw1\s+isp1\s+1\s+degraded \(912 ms, 20\.0 % loss\)\s+no\s+2026-11-22 04:10:03Z \(5m\)\s+300\s+75\.0 %$/m);
    expect(statusExitCode([row])).toBe(2);
    const silent = { ...slow, quality: { rttMs: null, lossPercent: 100, probes: 6 } };
    expect(statusTable([{ ...row, links: [silent] }], now)).toContain(" degraded (no answer, 100.0 % loss) ");
    // An up link's figures are not shown: its state says enough.
    expect(statusTable([{ ...healthy, links: [{ ...healthy.links[0], quality: { rttMs: 24.5, lossPercent: 0, probes: 10 } }] }], now)).toMatch(/^site1\s+gw1\s+isp1\s+1\s+up\s+yes\s/m);
  });

  it("exits 0 all up, 2 a link down or the daemon stopped, 1 a gateway unreachable", () => {
    const down: StatusRow = { ...healthy, links: [healthy.links[0], { ...healthy.links[1], status: "down" }] };
    expect(statusExitCode([healthy])).toBe(0);
    expect(statusExitCode([])).toBe(0);
    expect(statusExitCode([healthy, down])).toBe(2);
    expect(statusExitCode([{ ...healthy, daemon: "stopped" }])).toBe(2);
    expect(statusExitCode([{ ...healthy, problems: ["net.ipv4.ip_forward is 0 (the rules need 1): the LAN is offline"] }])).toBe(2);
    expect(statusExitCode([{ ...healthy, links: [{ ...healthy.links[0], status: "unknown" }] }])).toBe(2);
    expect(statusExitCode([down, { ...healthy, reachable: false, error: "x" }])).toBe(1);
  });

  it("ages read as an engineer writes them", () => {
    expect([0, 42_000, 300_000, 3600_000, 3 * 3600_000 + 12 * 60_000, 50 * 3600_000].map(age)).toEqual(["0s", "42s", "5m", "1h", "3h12m", "2d2h"]);
  });
});
