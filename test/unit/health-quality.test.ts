// Link quality in the rendered health.sh, run by sh: round trips read from ping's summaries, the
// sliding window and its hysteresis as collect() feeds it, and the Prometheus text file, checked by
// promtool.
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Quality } from "../../components/config";
import { planGateway } from "../../components/plan";
import { renderBundle, type Bundle } from "../../components/render";
import { gateway } from "./fixtures";
import { healthFunctions } from "./health-sh";

const scratch = mkdtempSync(join(tmpdir(), "mwt-quality-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let roots = 0;
/** An empty root of its own for each daemon run. */
const freshRoot = () => join(scratch, `root-${++roots}`);

/** The fixture with two targets per link (a round sends 2 probes), isp1 under `quality` (isp2 without), `edit` last. */
function bundleWith(quality: Quality | undefined, edit: (s: any) => void = () => {}): Bundle {
  return renderBundle(planGateway(gateway((s) => {
    for (const l of s.gateways[0].links) l.check = { targets: ["192.0.2.1", "198.51.100.1"] };
    s.gateways[0].links[0].quality = quality;
    edit(s);
  })));
}

// What iputils ping 20221126 prints for `ping -n -q -c 1 127.0.0.1` (captured in a scratch netns).
const IPUTILS_ANSWERED = `PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.

--- 127.0.0.1 ping statistics ---
1 packets transmitted, 1 received, 0% packet loss, time 0ms
rtt min/avg/max/mdev = 0.031/0.031/0.031/0.000 ms
`;
const IPUTILS_LOST = `PING 192.0.2.1 (192.0.2.1) 56(84) bytes of data.

--- 192.0.2.1 ping statistics ---
1 packets transmitted, 0 received, 100% packet loss, time 0ms
`;

describe("round trips from ping's summary (rtt_of)", () => {
  const bundle = bundleWith(undefined);
  /** rtt_of on each text as a file: microseconds. */
  const rttOf = (...texts: string[]) => {
    const dir = mkdtempSync(join(scratch, "ping-"));
    const calls = texts.map((t, i) => (writeFileSync(join(dir, `p${i}`), t), `rtt_of "${dir}/p${i}"; echo "$us"`));
    return healthFunctions(bundle, calls.join("\n")).trim().split("\n").map(Number);
  };

  it("reads iputils' and busybox's summaries to the microsecond, and 0 without one", () => {
    expect(rttOf(
      IPUTILS_ANSWERED,
      "rtt min/avg/max/mdev = 912.345/912.345/912.345/0.000 ms\n",
      "rtt min/avg/max/mdev = 1012.5/1012.5/1012.5/0.000 ms\n", // over a second: still in ms
      "round-trip min/avg/max = 1.2/1.2/1.2 ms\n", // busybox
      "round-trip min/avg/max = 12/12/12 ms\n", // no fraction
      "rtt min/avg/max/mdev = 0.0305/0.0305/0.0305/0.000 ms\n", // digits past the µs are dropped
      "rtt min/avg/max/mdev = 0.089/0.089/0.089/0.000 ms\n", // leading zeros are not octal
      IPUTILS_LOST,
      "",
    )).toEqual([31, 912345, 1012500, 1200, 12000, 30, 89, 0, 0]);
  });

  it("a probe round adds up the answered targets' round trips, with the probes sent", () => {
    // A ping that answers 192.0.2.1 in 912.345 ms and loses the rest, as iputils reports them.
    const bin = join(scratch, "bin-ping");
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, "ping"), `#!/bin/sh
for a; do target=$a; done
case $target in
192.0.2.1) echo 'rtt min/avg/max/mdev = 912.345/912.345/912.345/0.000 ms' ;;
*) printf '%s' '${IPUTILS_LOST}'; exit 1 ;;
esac
`);
    chmodSync(join(bin, "ping"), 0o755);
    const out = healthFunctions(bundle, 'rounds=$probes/test; mkdir -p "$rounds"; enter_round 0; probe_round 1 7; cat "$rounds/b0/1.7"; ls -A "$rounds/b0"', { root: freshRoot(), bin });
    // answered, sent, µs summed; the summaries stay in the round's block until the block goes
    expect(out).toBe("1 2 912345 0\n1.7\n1.7.p1\n1.7.p2\n");
  });
});

/** A probe round as probe_round leaves it: `answered` of 2 targets, each in `rttMs`. */
const round = (rttMs: number, answered = 2) => ({ answered, sent: 2, rttUs: rttMs * 1000 });
const rounds = (n: number, rttMs: number, answered = 2) => Array.from({ length: n }, () => round(rttMs, answered));
type Round = ReturnType<typeof round>;

/**
 * Link `index`'s state (from `initial`, a state-file line, or none) after each of `fed`, one
 * collect() per round as the daemon's loop does, with what collect() reported; and the state file.
 */
function feed(bundle: Bundle, fed: Round[], o: { index?: number; initial?: string } = {}) {
  const i = o.index ?? 1;
  const commands = [
    'rounds=$probes/test; mkdir -p "$linkstate" "$rounds"; enter_round 0',
    ...(o.initial ? [`link_info ${i}; echo '${o.initial}' >"$linkstate/$name"`] : []),
    ...fed.map((r, n) => `echo '${r.answered} ${r.sent} ${r.answered * r.rttUs}' >"$rounds/b0/${i}.${n}"; collect ${i} || changed=""; load_state ${i}; echo "$status $changed"`),
    `link_info ${i}; cat "$linkstate/$name"`,
  ];
  const lines = healthFunctions(bundle, commands.join("\n"), { root: freshRoot() }).replace(/\n$/, "").split("\n");
  const state = lines.pop()!;
  return { statuses: lines.map((l) => l.split(" ")[0]), changes: lines.map((l) => l.split(" ")[1]), state: state.split(" ") };
}

describe("collect, when a round wrote no result", () => {
  it("counts it failed once it is round_lag rounds old, and goes on with the rounds after it", () => {
    const bundle = renderBundle(planGateway(gateway())); // interval 0.5 s, timeout 1 s: lag 4 rounds
    const ok = (n: number) => `echo '1 1 500' >"$rounds/b0/1.${n}"`;
    const out = healthFunctions(bundle, [
      'rounds=$probes/test; mkdir -p "$linkstate" "$rounds"; enter_round 0',
      ok(0), ok(1), ok(3), ok(4), ok(5), // round 2's probe was killed: no file, ever
      "round=6; collect 1 2>&1; load_state 1; echo \"$status oks=$oks fails=$fails\"", // 2 is only 4 rounds old: waited for
      "round=10; collect 1 2>&1; load_state 1; echo \"$status oks=$oks fails=$fails\"",
      `${ok(6)}; collect 1 2>&1; load_state 1; echo "$status oks=$oks fails=$fails"`,
    ].join("\n"), { root: freshRoot() });
    expect(out.split("\n").filter(Boolean)).toEqual([
      "up oks=2 fails=0",
      "multiwan-health[gw1]: link isp1: probe round 2 wrote no result; counted as failed",
      "up oks=3 fails=0", // round 2 failed, 3, 4, 5 answered
      "up oks=4 fails=0",
    ]);
  });
});

describe("the quality window (collect, judge_quality)", () => {
  // Degraded above 200 ms or 20 % loss, up again at 160 ms and 10 % (the defaults: 80 %, half).
  const both = bundleWith({ latencyMs: 200, lossPercent: 20, window: 5 });
  const up = (n: number) => Array<string>(n).fill("up");
  const degraded = (n: number) => Array<string>(n).fill("degraded");

  it("degrades an up link only once the window is full and its mean passes the limit", () => {
    const slow = feed(both, rounds(5, 900));
    expect(slow.statuses).toEqual([...up(4), "degraded"]);
    expect(slow.changes).toEqual(["", "", "", "", "degraded"]); // for main's loop: hooks, the variant
    // At the limit is not above it; 201 ms of mean is.
    expect(feed(both, [...rounds(5, 200), round(205)]).statuses).toEqual([...up(5), "degraded"]);
  });

  it("keeps the state between the recovery value and the limit, both ways (hysteresis)", () => {
    const r = feed(both, [...rounds(5, 300), ...rounds(5, 170), ...rounds(5, 160), ...rounds(5, 180)]);
    expect(r.statuses).toEqual([
      ...up(4), "degraded",
      ...degraded(5), // 170 ms: under the limit, over the recovery value
      ...degraded(4), "up", // the window's mean 168, 166, 164, 162, then 160 ms: recovered
      ...up(5), // 180 ms once up: it stays up, where 170 ms kept it degraded
    ]);
    // state: status since oks fails answered transitions, then the window (sent:answered:µs), oldest first
    expect(r.state.slice(5)).toEqual(["2", ...Array(5).fill("2:2:360000")]);
  });

  it("judges loss the same way, over the window's probes", () => {
    // 10 probes per window: 2 lost is 20 % (the limit), 3 lost degrades, back to 1 lost recovers.
    const r = feed(both, [round(20), round(20), round(20), round(20, 1), round(20, 1), round(20, 1), ...rounds(4, 20)]);
    expect(r.statuses).toEqual([...up(5), "degraded", ...degraded(3), "up"]);
  });

  it("a link with only lossPercent ignores its latency, one with only latencyMs its loss", () => {
    const lossOnly = bundleWith({ lossPercent: 20, window: 5 });
    expect(feed(lossOnly, rounds(8, 900)).statuses).toEqual(up(8));
    expect(feed(lossOnly, [...rounds(3, 900, 1), ...rounds(5, 900)]).statuses).toEqual([...up(4), ...degraded(2), ...up(2)]);
    const latencyOnly = bundleWith({ latencyMs: 200, window: 5 });
    expect(feed(latencyOnly, rounds(8, 50, 1)).statuses).toEqual(up(8)); // half the probes lost
    expect(feed(latencyOnly, rounds(5, 250, 1)).statuses).toEqual([...up(4), "degraded"]);
  });

  it("a degraded link that stops answering goes down, and is judged on a fresh window once back", () => {
    const slowWindow = Array(5).fill("2:2:600000").join(" ");
    const r = feed(both, [...rounds(3, 0, 0), ...rounds(5, 300), ...rounds(4, 300)], { initial: `degraded 1000 0 0 2 1 ${slowWindow}` });
    expect(r.statuses).toEqual([...degraded(2), "down", ...Array(4).fill("down"), "up", ...up(3), "degraded"]);
    expect(r.state[5]).toBe("4"); // transitions: 1, then down, up, degraded
  });

  it("keeps no window for a link without quality", () => {
    const r = feed(both, rounds(12, 900), { index: 2 });
    expect(r.statuses).toEqual(up(12));
    expect(r.state).toEqual(["up", expect.any(String), "12", "0", "2", "0"]);
  });

  // A re-apply that removes the quality limits keeps the link state files: a degraded link must come back.
  it("brings a degraded link back when its quality limits are gone", () => {
    const r = feed(both, rounds(6, 20), { index: 2, initial: "degraded 1000 0 0 2 1" });
    expect(r.statuses.at(-1)).toBe("up");
  });

  // A torn window token ("2:") must not reach window_figures' arithmetic: that would kill collect's
  // subshell before it saves, and the link's state would freeze (here: it would never go down).
  it("recovers from a torn window instead of freezing the link's state", () => {
    const r = feed(both, rounds(6, 0, 0), { initial: "up 1000 5 0 2 0 2:2:40000 2:2:40000 2:2:40000 2:" });
    expect(r.statuses.at(-1)).toBe("down");
  });
});

/** `name{labels}` → value, for every sample of a Prometheus text; # lines skipped. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n").filter((l) => l && !l.startsWith("#"))) {
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

describe("the Prometheus text file (metrics_text)", () => {
  // isp1 under quality, isp2 beside it, lte a backup (tier 2) that carries only when no tier-1 link is up.
  const bundle = bundleWith({ latencyMs: 200, lossPercent: 10, window: 5 }, (s) => {
    s.gateways[0].links.push({ name: "lte", interface: "wwan0", tier: 2, check: { targets: ["192.0.2.1"] } });
  });
  // 8 of 10 probes answered, each in 912.345 ms.
  const slowWindow = "2:2:1824690 2:2:1824690 2:2:1824690 2:1:912345 2:1:912345";

  // The gateway's clock, stopped: now_ms reads `date +%s%3N`.
  const NOW = 1_700_000_000_500;
  const clock = join(scratch, "bin-clock");
  mkdirSync(clock, { recursive: true });
  writeFileSync(join(clock, "date"), `#!/bin/sh\necho ${NOW}\n`);
  chmodSync(join(clock, "date"), 0o755);

  /** metrics_text at round 42 with these link state lines. */
  function metricsOf(states: Record<string, string>): string {
    const writes = Object.entries(states).map(([name, line]) => `echo '${line}' >"$linkstate/${name}"`);
    return healthFunctions(bundle, ['mkdir -p "$linkstate"', ...writes, "round=42", "now=$(now_ms)", "metrics_text"].join("\n"), { root: freshRoot(), bin: clock });
  }

  /** promtool's verdict: exit status and everything it printed. */
  function promtool(text: string) {
    const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    return { status: r.status, said: `${r.stdout}${r.stderr}` };
  }

  it("passes promtool's parser and linter, and its values follow the link states", () => {
    const text = metricsOf({
      isp1: `degraded 1000 6 0 2 3 ${slowWindow}`,
      isp2: `down ${NOW - 90_250} 0 4 0 7`,
      lte: "up 1000 40 0 1 0",
    });
    expect(promtool(text)).toEqual({ status: 0, said: "" });
    const m = samples(text);
    const link = (metric: string, name: string, extra = "") => m.get(`multiwan_${metric}{gateway="gw1",link="${name}"${extra}}`);
    const status = (name: string) => ["up", "degraded", "down"].map((s) => link("link_status", name, `,status="${s}"`));
    expect(status("isp1")).toEqual([0, 1, 0]);
    expect(status("isp2")).toEqual([0, 0, 1]);
    expect(status("lte")).toEqual([1, 0, 0]);
    // Neither tier-1 link is up: the backup carries, the degraded and the down link do not.
    expect(m.get('multiwan_variant_info{gateway="gw1",variant="lte"}')).toBe(1);
    expect(["isp1", "isp2", "lte"].map((l) => link("link_carrying", l))).toEqual([0, 0, 1]);
    expect(link("link_rtt_seconds", "isp1")).toBe(0.912345);
    expect(link("link_loss_ratio", "isp1")).toBe(0.2);
    expect(["isp1", "isp2", "lte"].map((l) => link("link_transitions_total", l))).toEqual([3, 7, 0]);
    expect(link("link_probe_rounds_total", "isp2")).toBe(42);
    expect(link("link_seconds_since_change", "isp2")).toBe(90.25);
    expect(m.get('multiwan_last_round_timestamp_seconds{gateway="gw1"}')).toBe(NOW / 1000);
    // Round trip and loss only where the window holds probes (isp1's); every link has the other
    // series, and nothing else is written.
    expect(["isp2", "lte"].flatMap((l) => [link("link_rtt_seconds", l), link("link_loss_ratio", l)])).toEqual([undefined, undefined, undefined, undefined]);
    // Passive detection is on (the default) but no watcher runs here: 0, never a silent absence.
    expect(m.get('multiwan_passive_watching{gateway="gw1"}')).toBe(0);
    expect(m.size).toBe(3 * (3 + 4) + 2 + 2 + 1);
  });

  it("follows a recovery: a tier-1 link back up takes the traffic from the backup", () => {
    const text = metricsOf({ isp1: `degraded 1000 6 0 2 3 ${slowWindow}`, isp2: "up 1000 5 0 2 8", lte: "up 1000 40 0 1 0" });
    expect(promtool(text)).toEqual({ status: 0, said: "" });
    const m = samples(text);
    expect(m.get('multiwan_variant_info{gateway="gw1",variant="isp2+lte"}')).toBe(1);
    expect(["isp1", "isp2", "lte"].map((l) => m.get(`multiwan_link_carrying{gateway="gw1",link="${l}"}`))).toEqual([0, 1, 0]);
    expect(m.get('multiwan_link_status{gateway="gw1",link="isp2",status="up"}')).toBe(1);
  });

  it("with no link up, the degraded one carries: a slow line beats none", () => {
    const m = samples(metricsOf({ isp1: `degraded 1000 6 0 2 3 ${slowWindow}`, isp2: "down 1000 0 4 0 8", lte: "down 1000 0 9 0 2" }));
    expect(m.get('multiwan_variant_info{gateway="gw1",variant="isp1"}')).toBe(1);
    expect(["isp1", "isp2", "lte"].map((l) => m.get(`multiwan_link_carrying{gateway="gw1",link="${l}"}`))).toEqual([1, 0, 0]);
  });

  // A clock stepped back (since in the future) must not print "-1.-498": an unparsable file makes
  // node_exporter drop every multiwan series.
  it("stays parsable when the clock steps back past a link's last change", () => {
    const text = metricsOf({ isp1: `up ${NOW + 1_500} 6 0 2 3`, isp2: "up 1000 5 0 2 8", lte: "up 1000 40 0 1 0" });
    expect(promtool(text)).toEqual({ status: 0, said: "" });
  });
});
