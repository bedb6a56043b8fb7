import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Namespace labs and the Pulumi engine share the host's netfilter and 2 cores:
    // run test files one at a time so measured shares and timings are not disturbed.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
