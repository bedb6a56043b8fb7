// The `multiwan` command line. Exit codes: 0 ok, 1 error, 2 drift found or a link down.
import { Command, CommanderError } from "commander";
import { ConfigError } from "../components/config";
import { writeBundle } from "../components/bundle-files";
import { planGateway } from "../components/plan";
import { bundleFingerprint, renderBundle } from "../components/render";
import { loadSiteFile } from "../components/site-file";
import { fleetExitCode, fleetTable, fleetWorker, runFleet, type FleetOp } from "./fleet";
import { progress } from "./progress";
import { parallelism, reportTargets, withTargetOptions, type TargetOptions } from "./targets";
import { engineMessage, requirePulumi, stackNames, usePulumiToolchain } from "./workspace";
import { addStatusCommand } from "./status";
import { driftExitCode, driftTable, probeAll } from "./drift";

function gatewayOf(configFile: string, name: string) {
  const site = loadSiteFile(configFile);
  const gw = site.gateways.find((g) => g.name === name);
  if (!gw) {
    const names = site.gateways.map((g) => g.name).join(", ");
    throw new ConfigError([{ path: "gateways", message: `no gateway named "${name}" (have: ${names})` }]);
  }
  return gw;
}

interface FleetCliOptions {
  cwd: string;
  stacks: string;
  parallel: string;
  diff?: boolean;
  /** preview/up: false with --no-refresh */
  refresh?: boolean;
  json?: boolean;
}

async function fleet(op: FleetOp, opts: FleetCliOptions): Promise<number> {
  requirePulumi();
  const stacks = await stackNames(opts.cwd, opts.stacks);
  if (!stacks.length) throw new Error(`no stack of the project in ${opts.cwd} matches "${opts.stacks}"`);
  const parallel = parallelism(opts.parallel);
  console.error(`multiwan fleet ${op}: ${stacks.length} stacks, ${Math.min(parallel, stacks.length)} at a time`);
  const rows = await runFleet(op, stacks, { cwd: opts.cwd, parallel, diff: opts.diff, refresh: opts.refresh, progress: progress(stacks) });
  if (opts.json) console.log(JSON.stringify(rows, null, 2));
  else {
    for (const r of rows.filter((r) => r.detail)) console.log(`\n=== ${r.stack}\n${r.detail!.trimEnd()}`);
    console.log(`\n${fleetTable(rows)}`);
  }
  return fleetExitCode(rows);
}

export function program(setExitCode: (code: number) => void = () => {}): Command {
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

  withTargetOptions(cli.command("drift").description("compare each gateway's live rules, routes, tables, files and daemon with what was pushed (exit 0 in sync, 2 drift, 1 unreachable, not deployed or error)")).action(async (opts: TargetOptions) =>
    setExitCode(await reportTargets(opts, probeAll, driftTable, driftExitCode)),
  );

  const fleetCli = cli
    .command("fleet")
    .description("one operation over every site stack of the project (or --stacks GLOB), in parallel; a failing stack does not stop the others (exit 1 if any failed, 2 if any drifted or has a link down)");
  const fleetOps: [FleetOp, string][] = [
    ["preview", "what `pulumi up` would change on each stack, drift repairs included (refreshed first)"],
    ["up", "refresh each stack from its gateways, then deploy it: changes and drift repairs, confirm-or-rollback on every gateway"],
    ["refresh", "refresh each stack's state from its gateways and name the drifted ones (the next `fleet up` repairs them)"],
    ["drift", "compare each stack's gateways with what was pushed"],
    ["status", "each stack's gateways now: links up/down, since when, connections per link"],
  ];
  for (const [op, description] of fleetOps) {
    const sub = fleetCli
      .command(op)
      .description(description)
      .option("--cwd <dir>", "the Pulumi project directory", ".")
      .option("--stacks <glob>", "only stacks whose name matches (*, ?, [abc])", "*")
      .option("--parallel <n>", "stacks at once", "4")
      .option("--json", "the rows as JSON (progress still goes to stderr)");
    if (op === "preview" || op === "up") {
      sub.option("--diff", "print each stack's rule diff").option("--no-refresh", "do not refresh from the gateways first (drift already recorded is still repaired)");
    }
    sub.action(async (opts: FleetCliOptions) => setExitCode(await fleet(op, opts)));
  }
  cli
    .command("fleet-worker <op> <stack>", { hidden: true })
    .option("--cwd <dir>", "", ".")
    .option("--diff")
    .option("--no-refresh")
    .action((op: FleetOp, stack: string, opts: { cwd: string; diff?: boolean; refresh: boolean }) => fleetWorker(op, stack, opts));

  addStatusCommand(cli, setExitCode);
  return cli;
}

export async function main(argv: string[]): Promise<number> {
  let code = 0;
  usePulumiToolchain();
  try {
    await program((c) => (code = c)).parseAsync(argv, { from: "user" });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 1;
    console.error(e instanceof ConfigError ? e.message : `multiwan: ${engineMessage(e)}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
