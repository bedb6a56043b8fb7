import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { siteSchema } from "../../components/config";
import { REFERENCE_FILE, configReference } from "../../components/config-reference";

/** Leaf field paths, walked through zod's own API (not the JSON Schema the generator uses). */
function leafPaths(schema: z.ZodType, path: string): string[] {
  if (schema instanceof z.ZodOptional || schema instanceof z.ZodDefault) return leafPaths(schema.unwrap() as z.ZodType, path);
  if (schema instanceof z.ZodArray && schema.element instanceof z.ZodObject) return leafPaths(schema.element, `${path}[]`);
  if (schema instanceof z.ZodObject)
    return Object.entries(schema.shape).flatMap(([k, v]) => leafPaths(v as z.ZodType, path ? `${path}.${k}` : k));
  return [path];
}

describe("configuration reference", () => {
  const reference = configReference();

  it("matches the committed docs/configuration.md", () => {
    const committed = existsSync(REFERENCE_FILE) ? readFileSync(REFERENCE_FILE, "utf8") : "";
    expect(committed === reference, "docs/configuration.md is out of date with components/config.ts: run `npm run docs`").toBe(true);
  });

  it("documents every leaf field (a gateway's balance/health under the site's, a link's quality under health.quality)", () => {
    const paths = leafPaths(siteSchema, "").map((p) =>
      p.replace(/^gateways\[\]\.(balance|health)\./, "$1.").replace(/^gateways\[\]\.links\[\]\.quality\./, "health.quality."),
    );
    expect(paths).toContain("health.quality.recoverLossPercent");
    expect(reference).toContain("| `gateways[].links[].quality` | object, see `health.quality` |");
    expect(paths).toContain("gateways[].links[].check.reliability");
    for (const p of new Set(paths)) expect(reference, p).toContain(`| \`${p}\` |`);
  });

  it("shows defaults from the schema and from the merged sections", () => {
    expect(reference).toContain("| `gateways[].connection.rollbackAfter` | integer 5–600 | default `60` |");
    expect(reference).toContain("| `health.interval` | number 0.1–60 | default `0.5` |");
  });
});
