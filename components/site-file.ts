// Reading a site config file: the site object itself, or a Pulumi stack file carrying it as
// `config: { multiwan:site: … }`, so `multiwan render --config Pulumi.<site>.yaml` works too.
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { ConfigError, parseSite, type Site } from "./config";

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
  const stackSite = (doc as { config?: Record<string, unknown> } | null)?.config?.["multiwan:site"];
  return parseSite(stackSite ?? doc);
}
