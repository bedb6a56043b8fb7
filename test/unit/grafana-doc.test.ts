// The rules docs/grafana.md offers are ones Prometheus loads, and name only metrics the daemon writes.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { planGateway } from "../../components/plan";
import { renderBundle } from "../../components/render";
import { gateway } from "./fixtures";

const doc = readFileSync(join(__dirname, "..", "..", "docs", "grafana.md"), "utf8");
const rules = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1] ?? "";

describe("docs/grafana.md", () => {
  it("holds rules that promtool check rules accepts", () => {
    expect(rules).toContain("groups:");
    const dir = mkdtempSync(join(tmpdir(), "mwt-rules-"));
    try {
      writeFileSync(join(dir, "multiwan.rules.yml"), rules);
      execFileSync("promtool", ["check", "rules", join(dir, "multiwan.rules.yml")], { stdio: "pipe" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names only metrics health.sh writes", () => {
    const written = new Set([...renderBundle(planGateway(gateway()))["health.sh"].matchAll(/multiwan_[a-z_]+/g)].map((m) => m[0]));
    const named = [...`${rules}\n${doc}`.matchAll(/\bmultiwan_[a-z_]+/g)].map((m) => m[0]);
    expect(named.length).toBeGreaterThan(5);
    for (const metric of named) expect(written, metric).toContain(metric);
  });
});
