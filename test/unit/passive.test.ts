// passive.awk, the daemon's reader of conntrack events, run by this machine's awk on event lines in
// conntrack's own format: which link it names a suspect, and what must never make it point.
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { planGateway } from "../../components/plan";
import { renderBundle } from "../../components/render";
import { gateway } from "./fixtures";
import { healthFunctions } from "./health-sh";

// validSite: LAN 198.18.1.0/24, isp1 mark byte 1, isp2 mark byte 2 (connmarks 0x100, 0x200).
const MARK = { isp1: 0x100, isp2: 0x200 };
const LAN_HOST = "198.18.1.10";
const T0 = 1_796_000_000;

class Events {
  lines: string[] = [];
  private nextId = 1;
  /** A new LAN connection through `link` at `ms`; its id. `extraMark` sets bits outside the mask. */
  open(ms: number, link: keyof typeof MARK, o: { src?: string; dst?: string; extraMark?: number } = {}): number {
    const id = this.nextId++;
    const src = o.src ?? LAN_HOST;
    const dst = o.dst ?? "192.0.2.10";
    this.line(ms, "    [NEW]", `tcp      6 120 SYN_SENT src=${src} dst=${dst} sport=${40000 + id} dport=80 [UNREPLIED] src=${dst} dst=203.0.113.2 sport=80 dport=${40000 + id} mark=${MARK[link] | (o.extraMark ?? 0)} id=${id}`);
    return id;
  }
  /** The connection's first answer: a SYN-ACK. */
  answer(ms: number, id: number): void {
    this.line(ms, " [UPDATE]", `tcp      6 60 SYN_RECV src=${LAN_HOST} dst=192.0.2.10 sport=${40000 + id} dport=80 src=192.0.2.10 dst=203.0.113.2 sport=80 dport=${40000 + id} mark=256 id=${id}`);
  }
  /** A RST from a closed port: the entry goes at once. */
  refuse(ms: number, id: number): void {
    this.line(ms, "[DESTROY]", `tcp      6 120 CLOSE src=${LAN_HOST} dst=192.0.2.10 sport=${40000 + id} dport=9 [UNREPLIED] src=192.0.2.10 dst=203.0.113.2 sport=9 dport=${40000 + id} mark=256 id=${id}`);
  }
  private line(ms: number, event: string, rest: string): void {
    const t = T0 + ms / 1000;
    this.lines.push(`[${t.toFixed(6)}]\t${event} ${rest}`);
  }
}

/** validSite with an IPv6 LAN too: 2001:db8:10::/62 (not on a hex digit's boundary). */
function dualStack(s: any): void {
  s.gateways[0].lan.networks6 = ["2001:db8:10::/62"];
  for (const [i, l] of s.gateways[0].links.entries()) Object.assign(l, { gateway6: `2001:db8:${i + 1}::1`, check: { ...l.check, targets6: ["2001:db8:5e::1"] } });
}

/** passive.awk of validSite (after `edit`) with `passive`, fed `events`: its suspect lines (ticks left out). */
function suspects(events: Events, passive: unknown = true, edit: (s: any) => void = () => {}): string[] {
  const bundle = renderBundle(planGateway(gateway((s) => (edit(s), (s.gateways[0].health = { passive })))));
  const dir = mkdtempSync(join(tmpdir(), "mwt-passive-"));
  try {
    writeFileSync(join(dir, "passive.awk"), bundle["passive.awk"]);
    const out = execFileSync("awk", ["-f", join(dir, "passive.awk")], { input: events.lines.join("\n") + "\n", encoding: "utf8" });
    return out.split("\n").filter((l) => l !== "" && l !== "tick");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** 20 connections per second from 0 to `untilMs`, alternating isp1/isp2; isp2's answered after 5 ms, isp1's from `isp1DeadFrom` never. */
function traffic(e: Events, untilMs: number, isp1DeadFrom = Infinity): void {
  for (let ms = 0, n = 0; ms < untilMs; ms += 50, n++) {
    const link = n % 2 === 0 ? "isp1" : "isp2";
    const id = e.open(ms, link);
    if (link === "isp2" || ms < isp1DeadFrom) e.answer(ms + 5, id);
  }
  e.lines.sort(); // events in time order (fixed-width timestamps)
}

describe("passive detection's event reader", () => {
  it("names the link whose new connections all go unanswered, once they waited the reply time", () => {
    const e = new Events();
    traffic(e, 2000, 1000); // isp1 dead from 1.0 s: its SYNs at 1.0, 1.1, 1.2 s... stay unanswered
    const lines = suspects(e);
    // The third unanswered one (1.2 s) is 250 ms old at 1.45 s: the first event after that is 1.45 s.
    expect(lines[0]).toBe("suspect 1 3");
    // Named again only for connections started after it was named: here every 0.3 s or so.
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.every((l) => l === "suspect 1 3")).toBe(true);
  });

  it("says nothing while every link answers, or before the reply time has passed", () => {
    const e = new Events();
    traffic(e, 3000);
    expect(suspects(e)).toEqual([]);
    const late = new Events();
    traffic(late, 1300, 1000); // the events end at 1.255 s: of isp1's unanswered 1.0, 1.1, 1.2 s only one is 250 ms old
    expect(suspects(late)).toEqual([]);
  });

  it("is not fooled by one dead destination, closed ports, or connections not from the LAN", () => {
    const dead = new Events();
    traffic(dead, 3000);
    for (let ms = 0; ms < 3000; ms += 10) dead.open(ms, "isp1", { dst: "192.0.2.99" }); // 100/s, never answered
    dead.lines.sort();
    expect(suspects(dead)).toEqual([]);

    const refused = new Events();
    for (let ms = 0; ms < 3000; ms += 20) refused.refuse(ms + 1, refused.open(ms, "isp1"));
    traffic(refused, 3000);
    expect(suspects(refused)).toEqual([]);

    // isp1's only new connections come from outside (to a LAN server that is down), isp2 answers.
    const inbound = (src: string) => {
      const e = new Events();
      for (let ms = 0; ms < 3000; ms += 50) e.answer(ms + 5, e.open(ms, "isp2"));
      for (let ms = 0; ms < 3000; ms += 10) e.open(ms, "isp1", { src });
      e.lines.sort();
      return suspects(e);
    };
    expect(inbound("198.51.100.77")).toEqual([]);
    expect(inbound("198.18.1.77")[0]).toBe("suspect 1 3"); // the same from a LAN address does count
  });

  it("counts the LAN's IPv6 connections too, as conntrack prints their addresses, and only the LAN's", () => {
    const v6 = (src: string) => {
      const e = new Events();
      for (let ms = 0; ms < 3000; ms += 50) e.answer(ms + 5, e.open(ms, "isp2"));
      for (let ms = 0; ms < 3000; ms += 10) e.open(ms, "isp1", { src, dst: "2001:db8:5e::10" });
      e.lines.sort();
      return suspects(e, true, dualStack);
    };
    expect(v6("2001:db8:10::10")[0]).toBe("suspect 1 3");
    expect(v6("2001:db8:10:3:a:b:c:d")[0]).toBe("suspect 1 3"); // the /62's last /64
    expect(v6("2001:db8:10:4::10")).toEqual([]); // just past it
    expect(v6("2001:db8:a1:1::10")).toEqual([]);
    expect(v6("::")).toEqual([]);
  });

  it("names a link whose IPv6 goes unanswered while its IPv4 connections are answered", () => {
    const e = new Events();
    for (let ms = 0; ms < 3000; ms += 50) {
      e.answer(ms + 5, e.open(ms, "isp2"));
      e.answer(ms + 5, e.open(ms, "isp1")); // isp1's IPv4 answers
      if (ms >= 1000) e.open(ms + 1, "isp1", { src: "2001:db8:10::10", dst: "2001:db8:5e::10" }); // its IPv6 does not
    }
    e.lines.sort();
    expect(suspects(e, true, dualStack)[0]).toBe("suspect 1 3");
  });

  it("names no link when every link goes unanswered at once (the fault is not a link's)", () => {
    const e = new Events();
    for (let ms = 0, n = 0; ms < 2000; ms += 50, n++) e.open(ms, n % 2 === 0 ? "isp1" : "isp2");
    expect(suspects(e)).toEqual([]);
  });

  it("forgets an unanswered connection after 3 s (4 × replyMs when longer): a stale one on the other link does not shield a dead one", () => {
    const e = new Events();
    e.open(0, "isp2"); // never answered, and isp2 carries nothing else
    for (let ms = 0; ms < 7000; ms += 100) {
      const id = e.open(ms, "isp1");
      if (ms < 4000) e.answer(ms + 5, id); // isp1 dies at 4 s
    }
    e.lines.sort();
    expect(suspects(e)[0]).toBe("suspect 1 3"); // isp2's connection is over 3 s old by then
    // replyMs 2000 keeps it 8 s: isp2 still looks silent through 7 s, so nobody is named.
    expect(suspects(e, { replyMs: 2000 })).toEqual([]);
  });

  it("reads the link from the mask's byte only, whatever else the connmark carries", () => {
    const e = new Events();
    for (let ms = 0, n = 0; ms < 2000; ms += 50, n++) {
      const link = n % 2 === 0 ? "isp1" : "isp2";
      const id = e.open(ms, link, { extraMark: 0x10000 | 0x7 });
      if (link === "isp2" || ms < 1000) e.answer(ms + 5, id);
    }
    e.lines.sort();
    expect(suspects(e)[0]).toBe("suspect 1 3");
  });

  it("takes its count and reply time from health.passive", () => {
    const e = new Events();
    traffic(e, 2000, 1000);
    expect(suspects(e, { connections: 12 })).toEqual([]); // isp1 has 10 unanswered in all
    expect(suspects(e, { connections: 5, replyMs: 100 })[0]).toBe("suspect 1 5");
  });
});

describe("passive detection in health.sh", () => {
  const bundle = renderBundle(planGateway(gateway()));
  const scratch = () => mkdtempSync(join(tmpdir(), "mwt-passive-"));

  it("hands conntrack's events to awk line by line, not in blocks (mawk buffers a pipe unless told)", () => {
    const dir = scratch();
    try {
      writeFileSync(join(dir, "passive.awk"), bundle["passive.awk"]);
      const event = new Events();
      event.open(0, "isp1");
      // One event, then the pipe stays open for 2 s: awk's first line (a tick) must come at once.
      const out = healthFunctions(bundle, [
        `t0=$(now_ms); passive_awk_flags`,
        `{ echo '${event.lines[0]}'; sleep 2; } | awk $awk_flags -f "${dir}/passive.awk" | { read -r word; echo "$word $(($(now_ms) - t0))"; cat >/dev/null; }`,
      ].join("\n"));
      const [word, ms] = out.trim().split(" ");
      expect(word).toBe("tick");
      expect(Number(ms)).toBeLessThan(1500);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  /** confirm() of isp1 in a scratch root with a ping that logs its arguments and exits `pingExit`. */
  function confirmRun(o: { pingExit: number; rttUs?: number; state?: string; twice?: boolean }) {
    const root = scratch();
    const bin = join(root, "bin");
    execFileSync("mkdir", ["-p", bin]);
    writeFileSync(join(bin, "ping"), `#!/bin/sh\necho "$*" >>"${root}/pings"\nexit ${o.pingExit}\n`);
    chmodSync(join(bin, "ping"), 0o755);
    try {
      const out = healthFunctions(bundle, [
        'trap \'echo "USR1 reached the daemon"\' USR1',
        `main=$$; started_at $$; main_started=$st; rounds=$probes/test; mkdir -p "$rounds" "$linkstate"`,
        `echo '${o.state ?? "up 1000 9 0 1 0"}' >"$linkstate/isp1"`,
        ...(o.rttUs === undefined ? [] : [`echo ${o.rttUs} >"$rounds/1.rtt"`]),
        "confirm 1 3 2>&1",
        ...(o.twice ? ["confirm 1 3 2>&1"] : []),
        'cat "$rounds/passive.1" 2>/dev/null || echo "no verdict"',
      ].join("\n"), { root, bin });
      let pings: string[] = [];
      try {
        pings = readFileSync(join(root, "pings"), "utf8").trim().split("\n");
      } catch {
        // no ping ran
      }
      return { out, pings };
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }

  it("confirms a suspect with a burst through the link, waiting by its last round trip, and wakes the daemon", () => {
    const dead = confirmRun({ pingExit: 1, rttUs: 50_000 });
    // 3 pings 50 ms apart, each waiting 4 × 50 ms + 0.1 s, with the link's mark and interface.
    expect(dead.pings).toEqual(["-n -q -c 3 -i 0.05 -W 0.300 -m 256 -I wan1 192.0.2.1"]);
    expect(dead.out).toContain("USR1 reached the daemon");
    expect(dead.out).toMatch(/^3 new connections unanswered for 250 ms, then 0 of 1 needed targets answered a burst in \d+ ms$/m);
    // Short round trips wait at least 0.15 s; no round answered yet in this run: the probes' timeout.
    expect(confirmRun({ pingExit: 1, rttUs: 100 }).pings[0]).toContain("-W 0.150");
    expect(confirmRun({ pingExit: 1 }).pings[0]).toContain("-W 1.000");
  });

  it("keeps a link up whose targets answer the burst, and does not burst it again for 2 s; a down link is not burst", () => {
    const alive = confirmRun({ pingExit: 0, rttUs: 1000, twice: true });
    expect(alive.pings.length).toBe(1);
    expect(alive.out).toMatch(/link isp1: 3 new connections unanswered for 250 ms, but 1 of its targets answered a burst in \d+ ms: it stays up/);
    expect(alive.out).toContain("no verdict");
    expect(alive.out).not.toContain("USR1");
    const down = confirmRun({ pingExit: 1, state: "down 1000 0 9 0 1" });
    expect(down.pings).toEqual([]);
    expect(down.out).toContain("no verdict");
  });

  it("takes a confirmed link down in the daemon's loop: state, transition count, log line, hooks queued", () => {
    const root = scratch();
    try {
      const out = healthFunctions(bundle, [
        `rounds=$probes/test; mkdir -p "$rounds" "$linkstate" "$hookqueue" "$hooks"; started=1 hookseq=0 went_down=""`,
        `echo 'up 1000 9 0 1 4' >"$linkstate/isp1"`,
        `echo '3 new connections unanswered' >"$rounds/passive.1"`,
        "passive_verdicts 2>&1",
        'echo "went_down:$went_down"; cat "$linkstate/isp1"; cat "$hookqueue"/[0-9]*; ls "$rounds"',
      ].join("\n"), { root });
      expect(out).toMatch(/link isp1 down \(passive: 3 new connections unanswered\)/);
      expect(out).toContain("went_down: 1");
      expect(out).toMatch(/^down \d+ 0 3 1 5$/m); // status since oks fails(=down) answered transitions+1
      expect(out).toContain("isp1 down");
      expect(out).not.toContain("passive.1"); // consumed
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
