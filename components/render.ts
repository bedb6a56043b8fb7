// The renderer: the plan's view model through mustache templates into the gateway's bundle.
// Templates only loop and print; HTML escaping is off (these are rules and shell, not HTML).
import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import Mustache from "mustache";
import { UNITS } from "./layout";
import { MANIFEST_FILE, renderManifest } from "./manifest";
import { PACKAGE_ROOT } from "./package-root";
import type { Plan } from "./plan";

export const TEMPLATE_DIR = join(PACKAGE_ROOT, "templates");

/** File name in the bundle → its text. */
export type Bundle = Record<string, string>;

let templates: Record<string, string> | undefined;
function loadTemplates(): Record<string, string> {
  templates ??= Object.fromEntries(
    readdirSync(TEMPLATE_DIR)
      .filter((f) => f.endsWith(".mustache"))
      .map((f) => [f.replace(/\.mustache$/, ""), readFileSync(join(TEMPLATE_DIR, f), "utf8")]),
  );
  return templates;
}

const noEscape = { escape: (text: string) => text };

function render(name: string, view: object): string {
  const t = loadTemplates();
  return Mustache.render(t[name], view, t, noEscape);
}

/**
 * Files installed on the gateway, rendered from the plan; besides these, each family's rules, hooks,
 * `ip` batch and undo (FAMILY_TEMPLATES), its variants under `variants/`, and the manifest.
 */
export const BUNDLE_FILES = [
  "rt_tables",
  "sysctl.conf",
  "apply.sh",
  UNITS.restore,
  "health.sh",
  "passive.awk",
  UNITS.health,
] as const;

/** A family's files by template: the templates are named for IPv4's files. */
const FAMILY_TEMPLATES = { "iptables.rules": "rulesFile", "iptables.hooks": "hooksFile", "ip.batch": "batchFile", "ip.undo": "undoFile" } as const;

export function renderBundle(plan: Plan): Bundle {
  const bundle: Bundle = {};
  for (const file of BUNDLE_FILES) bundle[file] = render(file, plan);
  for (const family of plan.families) {
    const view = { ...plan, ...family };
    for (const [template, name] of Object.entries(FAMILY_TEMPLATES)) bundle[family[name]] = render(template, view);
    for (const variant of family.variants) {
      bundle[`variants/${variant.key}${family.variantSuffix}`] = render("variant.rules", { gateway: plan.gateway, ...variant });
    }
  }
  bundle[MANIFEST_FILE] = renderManifest(plan);
  return bundle;
}

/** A stable digest of every file name and byte: what changed on the gateway, in one value. */
export function bundleFingerprint(bundle: Bundle): string {
  const hash = createHash("sha256");
  for (const name of Object.keys(bundle).sort()) hash.update(`${name}\0${bundle[name]}\0`);
  return hash.digest("hex");
}

/**
 * How many lines a new bundle adds and removes against an old one, file by file, counted as
 * multisets (a diff's +/- without its order): the size of a change a reviewer will read.
 */
export function bundleLineChanges(before: Bundle, after: Bundle): { added: number; removed: number } {
  let added = 0;
  let removed = 0;
  const lines = (text: string | undefined) => (text === undefined ? [] : text.split("\n"));
  for (const file of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const left = new Map<string, number>();
    for (const line of lines(before[file])) left.set(line, (left.get(line) ?? 0) + 1);
    for (const line of lines(after[file])) {
      const n = left.get(line) ?? 0;
      if (n) left.set(line, n - 1);
      else added++;
    }
    for (const n of left.values()) removed += n;
  }
  return { added, removed };
}
