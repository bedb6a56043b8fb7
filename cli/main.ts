// The `multiwan` command line. Exit codes: 0 ok, 1 error, 2 drift found.
import { Command, CommanderError } from "commander";
import { ConfigError } from "../components/config";
import { writeBundle } from "../components/bundle-files";
import { planGateway } from "../components/plan";
import { bundleFingerprint, renderBundle } from "../components/render";
import { loadSiteFile } from "../components/site-file";

function gatewayOf(configFile: string, name: string) {
  const site = loadSiteFile(configFile);
  const gw = site.gateways.find((g) => g.name === name);
  if (!gw) {
    const names = site.gateways.map((g) => g.name).join(", ");
    throw new ConfigError([{ path: "gateways", message: `no gateway named "${name}" (have: ${names})` }]);
  }
  return gw;
}

export function program(): Command {
  const cli = new Command("multiwan")
    .description("Weighted, connection-sticky multi-uplink load balancing with failover for Linux gateways")
    .exitOverride()
    .showHelpAfterError();

  cli
    .command("render")
    .description("write one gateway's bundle (rules, routes, apply.sh, units) to a directory")
    .requiredOption("--config <file>", "site config: YAML site object or a Pulumi stack file with multiwan:site")
    .requiredOption("--gateway <name>", "gateway to render")
    .requiredOption("--out <dir>", "directory to write the bundle to (created if missing)")
    .action((opts: { config: string; gateway: string; out: string }) => {
      const bundle = renderBundle(planGateway(gatewayOf(opts.config, opts.gateway)));
      writeBundle(opts.out, bundle);
      console.log(`${opts.gateway}: ${Object.keys(bundle).length} files in ${opts.out} (${bundleFingerprint(bundle).slice(0, 12)})`);
    });

  cli
    .command("validate")
    .description("check a site config and list every problem with its field path")
    .requiredOption("--config <file>", "site config: YAML site object or a Pulumi stack file with multiwan:site")
    .action((opts: { config: string }) => {
      const site = loadSiteFile(opts.config);
      for (const gw of site.gateways) {
        const weights = gw.links.map((l) => `${l.name}=${l.weight}`).join(" ");
        console.log(`${gw.name}: ok (${gw.links.length} links: ${weights})`);
      }
    });

  return cli;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 1;
    console.error(e instanceof ConfigError ? e.message : `multiwan: ${(e as Error).message}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
