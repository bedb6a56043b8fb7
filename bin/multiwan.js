#!/usr/bin/env node
// The installed package runs the built CLI (dist/); a source checkout runs its TypeScript through
// tsx (a dev dependency), so tests and the lab never run a stale build.
const { existsSync } = require("node:fs");
const { join } = require("node:path");

const source = join(__dirname, "../cli/main.ts");
let cli;
if (existsSync(source) && existsSync(join(__dirname, "../node_modules/tsx"))) {
  require("tsx/cjs");
  cli = require(source);
} else {
  cli = require("../dist/cli/main.js");
}
cli.main(process.argv.slice(2)).then((code) => process.exit(code));
