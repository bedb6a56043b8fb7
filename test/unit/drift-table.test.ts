import { describe, expect, it } from "vitest";
import { driftExitCode, driftTable, type DriftRow } from "../../cli/drift";

const row = (gateway: string, status: DriftRow["status"], drift: string[] = [], stack?: string): DriftRow => ({ ...(stack ? { stack } : {}), gateway, status, drift });

describe("multiwan drift's table", () => {
  it("has one row per gateway and each difference below, with a stack column only for stacks", () => {
    expect(driftTable([row("gw1", "in-sync"), row("gw2", "drifted", ["missing ip rule: 1201: from all fwmark 0x200/0xff00 lookup 102"])]).split("\n")).toEqual([
      "GATEWAY  STATUS   CHANGES",
      "gw1      in-sync",
      "gw2      drifted  1",
      "",
      "  gw2: missing ip rule: 1201: from all fwmark 0x200/0xff00 lookup 102",
    ]);
    expect(driftTable([row("gw1", "in-sync", [], "site-a")]).split("\n")).toEqual(["STACK   GATEWAY  STATUS   CHANGES", "site-a  gw1      in-sync"]);
  });

  it("exits 1 when a gateway could not be checked, else 2 for drift, else 0", () => {
    expect(driftExitCode([row("gw1", "in-sync")])).toBe(0);
    expect(driftExitCode([row("gw1", "in-sync"), row("gw2", "drifted", ["x"])])).toBe(2);
    expect(driftExitCode([row("gw1", "drifted", ["x"]), row("gw2", "unreachable", ["refused"])])).toBe(1);
  });
});
