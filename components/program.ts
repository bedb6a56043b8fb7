// The ready program: one Gateway per gateway of the stack's site. Shared by index.ts and tests.
import * as pulumi from "@pulumi/pulumi";
import { ConfigError, parseSite, withDefaults, type SiteDefaults } from "./config";
import { Gateway } from "./gateway";

/**
 * Reads `multiwan:site` (the site object), `multiwan:defaults` (optional `balance`/`health` shared
 * by every site, usually in Pulumi.yaml) and the secret `multiwan:sshPrivateKey`.
 */
export function siteProgram() {
  const config = new pulumi.Config("multiwan");
  const raw = config.requireObject<Record<string, unknown>>("site");
  const defaults = config.getObject<SiteDefaults>("defaults");
  let site;
  try {
    site = parseSite(withDefaults(raw, defaults));
  } catch (e) {
    // A bad config fails the preview with every field path, before anything is pushed.
    if (e instanceof ConfigError) throw new pulumi.RunError(`multiwan:site: ${e.message}`);
    throw e;
  }
  const privateKey = config.requireSecret("sshPrivateKey");
  const gateways = site.gateways.map((gw) => new Gateway(gw.name, { config: gw, privateKey }));
  return Object.fromEntries(
    gateways.map((g, i) => [site.gateways[i].name, { fingerprint: g.fingerprint, links: g.links, applied: g.applied }]),
  );
}
