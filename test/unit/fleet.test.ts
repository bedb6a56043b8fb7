import { describe, expect, it } from "vitest";
import { fleetExitCode, fleetTable, type FleetRow } from "../../cli/fleet";
import { progress } from "../../cli/progress";
import { globPattern } from "../../cli/workspace";

const row = (stack: string, result: FleetRow["result"], extra: Partial<FleetRow> = {}): FleetRow => ({
  stack,
  gateways: 1,
  changes: "no changes",
  seconds: 2.25,
  result,
  ...extra,
});

describe("fleet summary", () => {
  it("has one row per stack, each failure in its own words, and the counts", () => {
    const text = fleetTable([row("site-a", "ok"), row("site-b", "failed", { gateways: null, changes: "", error: "multiwan:site: bad\n  gateways[0].links[0].weight: Too small" })]);
    expect(text.split("\n")).toEqual([
      "STACK   GATEWAYS  CHANGES     DURATION  RESULT",
      "site-a  1         no changes  2.3 s     ok",
      "site-b  -         -           2.3 s     failed",
      "",
      "site-b failed:",
      "  multiwan:site: bad",
      "    gateways[0].links[0].weight: Too small",
      "",
      "2 stacks: 1 ok, 0 drifted, 0 degraded, 1 failed",
    ]);
  });

  it("exits 1 when any stack failed, else 2 for drift or a link down, else 0", () => {
    expect(fleetExitCode([row("a", "ok"), row("b", "ok")])).toBe(0);
    expect(fleetExitCode([row("a", "ok"), row("b", "drifted")])).toBe(2);
    expect(fleetExitCode([row("a", "degraded")])).toBe(2);
    expect(fleetExitCode([row("a", "drifted"), row("b", "failed")])).toBe(1);
  });
});

describe("fleet helpers", () => {
  it("selects stacks by glob", () => {
    const pick = (glob: string) => ["site-a", "site-b", "site-c", "lab", "site.x"].filter((n) => globPattern(glob).test(n));
    expect(pick("*")).toEqual(["site-a", "site-b", "site-c", "lab", "site.x"]);
    expect(pick("site-[ac]")).toEqual(["site-a", "site-c"]);
    expect(pick("site?a")).toEqual(["site-a"]);
    expect(pick("site.*")).toEqual(["site.x"]); // a dot is a dot
  });

  it("writes plain progress lines when not on a terminal", () => {
    const out: string[] = [];
    const stream = { isTTY: false, write: (s: string) => out.push(s) } as unknown as NodeJS.WriteStream;
    const say = progress(["site-a", "b"], stream);
    say("b", "updating");
    say("site-a", "ok in 2.0 s");
    expect(out).toEqual(["b       updating\n", "site-a  ok in 2.0 s\n"]);
  });
});
