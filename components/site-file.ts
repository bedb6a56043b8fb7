// Reading a site config file: the site object itself, or a Pulumi stack file carrying it as
// `config: { multiwan:site: … }`, so `multiwan render --config Pulumi.<site>.yaml` works too and
// renders exactly what `pulumi up` pushes: with the project's `multiwan:defaults` from the
// Pulumi.yaml next to it.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parse } from "yaml";
import { ConfigError, parseSite, withDefaults, type Site, type SiteDefaults } from "./config";

/**
 * A structured config value as the engine reads it (pulumi.Config's requireObject): an object as
 * written, or a JSON string, which is what `pulumi config set multiwan:site '<json>'` stores.
 */
function configObject(value: unknown, path: string): unknown {
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch (e) {
    throw new ConfigError([{ path, message: `is a string but not JSON: ${(e as Error).message}` }]);
  }
}

function projectDefaults(stackFile: string): SiteDefaults | undefined {
  const project = join(dirname(stackFile), "Pulumi.yaml");
  if (!existsSync(project)) return undefined;
  const value = (parse(readFileSync(project, "utf8")) as { config?: Record<string, { value?: unknown }> } | null)?.config?.["multiwan:defaults"]?.value;
  return configObject(value, `${project}: multiwan:defaults`) as SiteDefaults | undefined;
}

export function loadSiteFile(file: string): Site {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError([{ path: file, message: `cannot read: ${(e as Error).message}` }]);
  }
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    throw new ConfigError([{ path: file, message: `not valid YAML: ${(e as Error).message.split("\n")[0]}` }]);
  }
  const stackSite = configObject((doc as { config?: Record<string, unknown> } | null)?.config?.["multiwan:site"], "multiwan:site");
  return parseSite(stackSite ? withDefaults(stackSite as Record<string, unknown>, projectDefaults(file)) : doc);
}
