// Real connections through real netfilter: each link's share of new connections is its weight's.
import { expect, it } from "vitest";
import { withLab } from "../../lab/lab";
import { deploy, labSite, unmarkedConnections } from "../../lab/deploy";
import { describeAsRoot } from "../helpers/root";

const CONNECTIONS = 2000;

describeAsRoot.each([
  { links: 2, weights: [3, 1] },
  { links: 3, weights: [5, 3, 2] },
])("$links links weighted $weights", ({ links, weights }) => {
  it(`splits ${CONNECTIONS} new connections within ±1 point of the weights, none failed or unmarked`, async () => {
    await withLab({ links }, async (lab) => {
      await deploy(lab, labSite(lab, { weights }));
      const results = await lab.openConnections(CONNECTIONS, { concurrency: 20 });

      expect(results.filter((r) => !r.ok).map((r) => r.error)).toEqual([]);
      const shares = lab.shares(results);
      const total = weights.reduce((a, b) => a + b, 0);
      lab.links.forEach((l, i) => expect(Math.abs(shares[l.name] - weights[i] / total)).toBeLessThanOrEqual(0.01));
      expect(await unmarkedConnections(lab, lab.serverAddress)).toBe(0);
    });
  }, 180_000);
});
