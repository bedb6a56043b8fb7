// The configuration reference (docs/configuration.md), generated from the site schema so it cannot
// drift from what parseSite accepts. zod's JSON Schema export is the walker: it is a public API that
// normalises every wrapper (optional, default, refine, meta) into plain keywords.
import { join } from "node:path";
import { z } from "zod";
import { CROSS_FIELD_RULES, siteSchema } from "./config";
import { PACKAGE_ROOT } from "./package-root";

export const REFERENCE_FILE = join(PACKAGE_ROOT, "docs", "configuration.md");

/** The JSON Schema keywords zod emits for this schema. */
interface Node {
  type?: string;
  title?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  anyOf?: Node[];
  format?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  items?: Node;
  properties?: Record<string, Node>;
  required?: string[];
}

interface Section {
  path: string;
  node: Node;
}

const FORMATS: Record<string, string> = { ipv4: "IPv4 address", cidrv4: "IPv4 network (CIDR)" };

function range(min: number | undefined, max: number | undefined): string {
  // zod's int() bounds are the safe-integer limits: not a constraint worth printing.
  const lo = min !== undefined && min > Number.MIN_SAFE_INTEGER ? min : undefined;
  const hi = max !== undefined && max < Number.MAX_SAFE_INTEGER ? max : undefined;
  if (lo !== undefined && hi !== undefined) return `${lo}–${hi}`;
  if (lo !== undefined) return `≥ ${lo}`;
  return hi !== undefined ? `≤ ${hi}` : "";
}

/** Fields of an object, of the objects in an array, or of the object among a union's options. */
const objectOf = (n: Node): Node | undefined =>
  n.type === "object" ? n : n.items ? objectOf(n.items) : n.anyOf?.map(objectOf).find((o) => o !== undefined);
/** Sections with the same fields (site and gateway `balance`) are documented once. */
const fieldsKey = (n: Node) => JSON.stringify([n.properties, n.required]);
const depth = (path: string) => path.split(".").length;

function typeOf(n: Node, section: string | undefined): string {
  if (n.enum) return n.enum.map((v) => `\`${JSON.stringify(v)}\``).join(" | ");
  if (n.type === "object") return `object, see \`${section}\``;
  if (n.title) return n.title;
  if (n.anyOf) return n.anyOf.map((a) => typeOf(a, section)).join(" or ");
  switch (n.type) {
    case "array": {
      const count = range(n.minItems, n.maxItems);
      return `list${count && ` (${count})`} of ${typeOf(n.items!, section)}`;
    }
    case "integer":
    case "number":
      return `${n.type} ${range(n.minimum, n.maximum)}`.trim();
    case "boolean":
      return "boolean";
    case "string":
      if (n.format) return FORMATS[n.format] ?? `string (${n.format})`;
      return n.pattern ? `string matching \`${n.pattern}\`` : "string";
  }
  throw new Error(`config reference: no wording for ${JSON.stringify(n)}`);
}

const cell = (s: string) => s.replace(/\|/g, "\\|");

export function configReference(): string {
  const root = z.toJSONSchema(siteSchema, { io: "input" }) as Node;
  const sections: Section[] = [];
  const walk = (node: Node, path: string) => {
    sections.push({ path, node });
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      const obj = objectOf(child);
      const at = path ? `${path}.${key}` : key;
      if (obj) walk(obj, child.type === "array" ? `${at}[]` : at);
    }
  };
  walk(root, "");
  const canonical = new Map<string, Section>();
  for (const s of sections) {
    const seen = canonical.get(fieldsKey(s.node));
    if (!seen || depth(s.path) < depth(seen.path)) canonical.set(fieldsKey(s.node), s);
  }
  const documented = sections.filter((s) => canonical.get(fieldsKey(s.node)) === s);

  const out = [
    "# Configuration reference",
    "",
    "<!-- Generated from components/config.ts by `npm run docs`: edit the schema, not this file. -->",
    "",
    "The site object is `multiwan:site` in a stack's config, or the `--config` file of the CLI. In a stack, `balance` and " +
      "`health` are merged key by key: built-in defaults, `multiwan:defaults` (Pulumi.yaml), the site's, then the gateway's.",
  ];
  for (const { path, node } of documented) {
    out.push("", `## ${path ? `\`${path}\`` : "Site"}`, "", "| field | type | required / default | description |", "|---|---|---|---|");
    for (const [key, child] of Object.entries(node.properties!)) {
      const at = path ? `${path}.${key}` : key;
      if (!child.description) throw new Error(`config reference: ${at} has no description in components/config.ts`);
      const obj = objectOf(child);
      const section = obj && canonical.get(fieldsKey(obj))!.path;
      const presence =
        "default" in child ? `default \`${JSON.stringify(child.default)}\`` : node.required?.includes(key) ? "required" : "optional";
      out.push(`| \`${at}\` | ${cell(typeOf(child, section))} | ${presence} | ${cell(child.description)} |`);
    }
  }
  out.push("", "## Checks across fields", "", ...CROSS_FIELD_RULES.map((r) => `- ${r}`), "");
  return out.join("\n");
}
