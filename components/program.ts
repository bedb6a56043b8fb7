// The ready program: one Gateway per gateway of the stack's site. Shared by index.ts and tests.
import * as pulumi from "@pulumi/pulumi";
import { ConfigError, parseSite, withDefaults, type SiteDefaults } from "./config";
import { Gateway } from "./gateway";

/**
 * Reads `multiwan:site` (the site object), `multiwan:defaults` (optional `balance`/`health` shared
 * by every site, usually in Pulumi.yaml), the secret `multiwan:sshPrivateKey` (optional when every
 * gateway uses the ssh-agent: `connection.agent`) and the optional secret
 * `multiwan:sshPrivateKeyPassphrase`.
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
  const privateKey = config.getSecret("sshPrivateKey");
  const passphrase = config.getSecret("sshPrivateKeyPassphrase");
  const keyless = site.gateways.filter((gw) => !gw.connection.agent).map((gw) => gw.name);
  if (privateKey === undefined && keyless.length) {
    throw new pulumi.RunError(
      `multiwan:sshPrivateKey: missing; set it with \`pulumi config set --secret multiwan:sshPrivateKey < KEYFILE\`, ` +
        `or use the ssh-agent (connection.agent: true) on ${keyless.join(", ")}`,
    );
  }
  // A resolved gateway is itself a valid config (defaults filled in, marks and tables explicit).
  const gateways = site.gateways.map((gw) => new Gateway(gw.name, { config: gw, privateKey, passphrase }));
  return Object.fromEntries(
    gateways.map((g, i) => [site.gateways[i].name, { fingerprint: g.fingerprint, links: g.links, applied: g.applied }]),
  );
}
