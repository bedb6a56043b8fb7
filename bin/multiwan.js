#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, resolved from this package, so no build step is needed.
require("tsx/cjs");
require("../cli/main.ts")
  .main(process.argv.slice(2))
  .then((code) => process.exit(code));
