// Site files as the CLI reads them: a Pulumi stack file's `multiwan:site` as an object or as the
// JSON string `pulumi config set multiwan:site '<json>'` stores, both rendering the same bundle.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../components/config";
import { planGateway } from "../../components/plan";
import { renderBundle } from "../../components/render";
import { loadSiteFile } from "../../components/site-file";
import { validSite } from "./fixtures";

const scratch = mkdtempSync(join(tmpdir(), "mwt-sitefile-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const DEFAULTS = { health: { interval: 2, timeout: 1 } };

/** A project dir with Pulumi.yaml (`multiwan:defaults`) and a stack file carrying `site`; its path. */
function stackFile(name: string, site: unknown, defaults: unknown = DEFAULTS): string {
  const dir = join(scratch, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "Pulumi.yaml"), stringify({ name: "sites", runtime: "nodejs", config: { "multiwan:defaults": { value: defaults } } }));
  writeFileSync(join(dir, "Pulumi.site1.yaml"), stringify({ config: { "multiwan:site": site } }));
  return join(dir, "Pulumi.site1.yaml");
}

const bundleOf = (file: string) => renderBundle(planGateway(loadSiteFile(file).gateways[0]));

describe("loadSiteFile", () => {
  it("renders a JSON-string multiwan:site (and defaults) exactly as the object form", () => {
    const object = bundleOf(stackFile("object", validSite()));
    const asString = stackFile("string", JSON.stringify(validSite()), JSON.stringify(DEFAULTS));
    expect(bundleOf(asString)).toEqual(object);
    expect(object["health.sh"]).toContain("interval=2"); // the project's defaults were applied
  });

  it("names the key when the string is not JSON, and checks the parsed site as usual", () => {
    const notJson = stackFile("not-json", "{gateways: oops");
    expect(() => loadSiteFile(notJson)).toThrow(ConfigError);
    expect(() => loadSiteFile(notJson)).toThrow(/\n  multiwan:site: is a string but not JSON/);
    const bad = validSite();
    bad.gateways[0].links[0].weight = 0;
    expect(() => loadSiteFile(stackFile("bad", JSON.stringify(bad)))).toThrow(/invalid multiwan config \(1 problem\):\n  gateways\[0\]\.links\[0\]\.weight: /);
  });
});
