// `npm run docs`: regenerate docs/configuration.md from the site schema; `--check` fails if the
// committed file is stale instead of writing it.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { relative } from "node:path";
import { REFERENCE_FILE, configReference } from "../components/config-reference";

const text = configReference();
const file = relative(process.cwd(), REFERENCE_FILE);
if (process.argv.includes("--check")) {
  if (!existsSync(REFERENCE_FILE) || readFileSync(REFERENCE_FILE, "utf8") !== text) {
    console.error(`${file} is out of date with components/config.ts: run \`npm run docs\``);
    process.exit(1);
  }
  console.log(`${file} is up to date`);
} else {
  writeFileSync(REFERENCE_FILE, text);
  console.log(`wrote ${file}`);
}
