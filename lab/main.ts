// The built-in lab's own command line, run by `sudo scripts/lab.sh [down]`. It stays out of the
// shipped `multiwan` CLI: the lab uses the CLI's modules, the CLI never imports the lab.
import { Command, CommanderError } from "commander";
import { engineMessage, usePulumiToolchain } from "../cli/workspace";
import { defaultLabDir, labDown, labUp } from "./builtin";

function program(): Command {
  return new Command("scripts/lab.sh")
    .description("build the built-in lab (root): namespace gateways with 2 and 3 uplinks behind real sshd, deployed by pulumi up, then shares and a failover measured; `down` removes it all")
    .argument("[down]", "remove the lab instead")
    .option("--dir <dir>", "where the lab keeps its files", defaultLabDir())
    .exitOverride()
    .showHelpAfterError()
    .action(async (down: string | undefined, opts: { dir: string }) => {
      if (down !== undefined && down !== "down") throw new Error(`unknown lab action "${down}" (say nothing, or down)`);
      await (down ? labDown(opts.dir) : labUp(opts.dir));
    });
}

async function main(argv: string[]): Promise<number> {
  usePulumiToolchain();
  try {
    await program().parseAsync(argv, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 1;
    console.error(`lab: ${engineMessage(e)}`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code));
