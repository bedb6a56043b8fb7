// The engine alone: CLI, language host (or its stand-in) and the dynamic-provider plugin, no
// other provider. If this fails, the toolchain is broken. The fixture has no package.json of its
// own, so its outputs also show that its program ran, not the repository's package.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { withStack } from "../helpers/engine";

const PROGRAM = join(__dirname, "fixtures/dynamic");

describe("engine: dynamic provider", () => {
  it("up, preview --diff after a config change, destroy", async () => {
    await withStack({ program: PROGRAM, plugins: [], config: { greeting: "alpha" } }, async (s) => {
      await s.up();
      expect(await s.outputs()).toEqual({ text: "hello-alpha" });

      await s.setConfig("greeting", "beta");
      const preview = await s.preview({ diff: true });
      expect(preview.stdout).toMatch(/~ greeting: "alpha" => "beta"/);

      await s.destroy();
      expect(await s.outputs()).toEqual({});
    });
  }, 300_000);
});
