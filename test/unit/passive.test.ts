// passive.awk, the daemon's reader of conntrack events, run by this machine's awk on event lines in
// conntrack's own format: which link it names a suspect, and what must never make it point.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { planGateway } from "../../components/plan";
import { renderBundle } from "../../components/render";
import { gateway } from "./fixtures";

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

/** passive.awk of validSite with `passive`, fed `events`: its suspect lines (ticks left out). */
function suspects(events: Events, passive: unknown = true): string[] {
  const bundle = renderBundle(planGateway(gateway((s) => (s.gateways[0].health = { passive }))));
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

    const inbound = new Events();
    traffic(inbound, 3000);
    for (let ms = 0; ms < 3000; ms += 10) inbound.open(ms, "isp1", { src: "198.51.100.77" }); // from the internet to a LAN server
    inbound.lines.sort();
    expect(suspects(inbound)).toEqual([]);
  });

  it("names no link when every link goes unanswered at once (the fault is not a link's)", () => {
    const e = new Events();
    for (let ms = 0, n = 0; ms < 2000; ms += 50, n++) e.open(ms, n % 2 === 0 ? "isp1" : "isp2");
    expect(suspects(e)).toEqual([]);
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
