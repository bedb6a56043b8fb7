import type { Deployment } from "@pulumi/pulumi/automation";
import { describe, expect, it } from "vitest";
import { pushedGateways, type DriftRow } from "../../cli/drift";
import type { EngineEvent } from "@pulumi/pulumi/automation";
import { driftOutcome, fleetExitCode, fleetTable, gatewayChange, refreshOutcome, watchEngine, type FleetRow } from "../../cli/fleet";
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

  it("says not deployed for a stack with no gateway pushed, and that fails the run", () => {
    const rows = [row("site-a", "ok"), row("site-b", "failed", { gateways: 0, changes: "not deployed" })];
    expect(fleetTable(rows).split("\n")).toEqual([
      "STACK   GATEWAYS  CHANGES       DURATION  RESULT",
      "site-a  1         no changes    2.3 s     ok",
      "site-b  0         not deployed  2.3 s     failed",
      "",
      "2 stacks: 1 ok, 0 drifted, 0 degraded, 1 failed",
    ]);
    expect(fleetExitCode(rows)).toBe(1);
    expect(fleetTable([row("site-a", "ok")])).toMatch(/\n1 stack: 1 ok, /);
  });

  it("exits 1 when any stack failed, else 2 for drift or a link down, else 0", () => {
    expect(fleetExitCode([row("a", "ok"), row("b", "ok")])).toBe(0);
    expect(fleetExitCode([row("a", "ok"), row("b", "drifted")])).toBe(2);
    expect(fleetExitCode([row("a", "degraded")])).toBe(2);
    expect(fleetExitCode([row("a", "drifted"), row("b", "failed")])).toBe(1);
  });
});

describe("fleet changes per gateway", () => {
  it("names the rule change, the drift an update repairs, or both", () => {
    expect(gatewayChange("gw1", { added: 9, removed: 6 }, [])).toBe("gw1 +9 -6 lines");
    expect(gatewayChange("gw1", { added: 0, removed: 0 }, ["drifted: missing ip rule: 1201", "drifted: extra rt_tables: 7 x"])).toBe("gw1 repair: 2 drifted lines");
    expect(gatewayChange("gw1", { added: 1, removed: 1 }, ["drifted: missing ip rule: 1201"])).toBe("gw1 +1 -1 lines, repair: 1 drifted line");
    // An update that changes no line (a new key, a new rollback delay) still says so.
    expect(gatewayChange("gw1", { added: 0, removed: 0 }, [])).toBe("gw1 +0 -0 lines");
  });

  it("reports a refresh: in sync, the drifted gateways with their lines, unreachable ones as failed", () => {
    expect(refreshOutcome([])).toEqual({ gateways: 0, changes: "not deployed", result: "failed" });
    expect(refreshOutcome([{ gateway: "gw1", drift: [] }, { gateway: "gw2" }])).toEqual({ gateways: 2, changes: "in sync", result: "ok" });
    expect(refreshOutcome([{ gateway: "gw1", drift: ["drifted: missing ip rule: 1201", "drifted: stopped health daemon"] }, { gateway: "gw2", drift: [] }])).toEqual({
      gateways: 2,
      changes: "gw1 drifted: 2 lines",
      result: "drifted",
      error: "gw1 drifted: missing ip rule: 1201\ngw1 drifted: stopped health daemon",
    });
    expect(refreshOutcome([{ gateway: "gw1", drift: ["unreachable: 10.0.0.1:22: connect ECONNREFUSED"] }]).result).toBe("failed");
  });

  it("reports drift rows: in sync, drifted, unreachable", () => {
    const drift = (gateway: string, status: DriftRow["status"], lines: string[] = []): DriftRow => ({ gateway, status, drift: lines });
    expect(driftOutcome([drift("gw1", "in-sync"), drift("gw2", "in-sync")])).toEqual({ gateways: 2, changes: "in sync", result: "ok" });
    expect(driftOutcome([drift("gw1", "drifted", ["missing ip rule: 1201", "missing file: x"]), drift("gw2", "in-sync")])).toEqual({
      gateways: 2,
      changes: "gw1 drifted",
      result: "drifted",
      error: "gw1 drifted: missing ip rule: 1201; missing file: x",
    });
    expect(driftOutcome([drift("gw1", "drifted", ["x"]), drift("gw2", "unreachable", ["refused"])]).result).toBe("failed");
  });
});

describe("gateways in a stack's state", () => {
  const state = (resources: object[]) => ({ version: 3, deployment: { resources } }) as Deployment;
  const gateway = (name: string) => ({ urn: `urn:pulumi:s::sites::multiwan:index:Gateway::${name}`, type: "multiwan:index:Gateway" });
  const pushed = (name: string) => ({ gateway: name, files: { "apply.sh": "" }, installDir: "/etc/multiwan", root: "/", target: { host: "h" } });

  it("are the Gateway components' children that carry a pushed bundle, of either push type", () => {
    const resources = [
      { urn: "urn:pulumi:s::sites::pulumi:pulumi:Stack::sites-s", type: "pulumi:pulumi:Stack" },
      gateway("gw1"),
      { urn: "urn:…::gw1-push", type: "pulumi-nodejs:dynamic:Resource", parent: gateway("gw1").urn, outputs: pushed("gw1") },
      gateway("gw2"),
      { urn: "urn:…::gw2-push", type: "multiwan:index:Push", parent: gateway("gw2").urn, outputs: pushed("gw2") },
      // The project's own dynamic resource, even one with the same fields, is not a gateway.
      { urn: "urn:…::mine", type: "pulumi-nodejs:dynamic:Resource", outputs: pushed("mine") },
    ];
    expect(pushedGateways(state(resources)).map((o) => o.gateway)).toEqual(["gw1", "gw2"]);
  });

  it("are none when nothing was pushed: no stack yet, or a Gateway whose push failed", () => {
    expect(pushedGateways(state([]))).toEqual([]);
    expect(pushedGateways({ version: 3, deployment: {} } as Deployment)).toEqual([]);
    expect(pushedGateways(state([gateway("gw1")]))).toEqual([]);
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

describe("engine events of preview/up", () => {
  const gw = "urn:pulumi:s::p::multiwan:index:Gateway::gw1";
  const event = (metadata: object) => ({ resourcePreEvent: { metadata } }) as unknown as EngineEvent;
  const pushUpdate = (drift: string[]) =>
    event({ op: "update", type: "pulumi-nodejs:dynamic:Resource", urn: `${gw}$x::gw1-push`, old: { inputs: { files: { a: "1" } }, outputs: { drift } }, new: { parent: gw, inputs: { gateway: "gw1", files: { a: "1" } } } });

  it("reports drift found by the refresh as a repair of that gateway", () => {
    const w = watchEngine(() => {});
    w.onEvent(event({ op: "same", type: "multiwan:index:Gateway", urn: gw }));
    w.onEvent(pushUpdate(["drifted: missing ip rule: 1201"]));
    expect([...w.updates.values()]).toEqual(["gw1 repair: 1 drifted line"]);
    expect(w.unreachable).toEqual([]);
  });

  it("never reports a gateway the refresh could not reach as repaired", () => {
    const w = watchEngine(() => {});
    w.onEvent(event({ op: "same", type: "multiwan:index:Gateway", urn: gw }));
    w.onEvent(pushUpdate(["unreachable: 192.0.2.50:22: connect ETIMEDOUT"]));
    expect(w.unreachable).toEqual(["gw1 unreachable: 192.0.2.50:22: connect ETIMEDOUT"]);
    expect([...w.updates.values()]).toEqual(["gw1 +0 -0 lines"]);
  });
});
