// Real connections through real netfilter: each link's share of new connections is its weight's.
import { expect, it } from "vitest";
import { withLab } from "../../lab/lab";
import { deploy, labSite, unmarkedConnections } from "../../lab/deploy";
import { describeAsRoot } from "../helpers/root";

// 188:19 (weights written as 940/95 Mbit/s) is a split of W = 207 through nested counters: 20
// periods of it, within 0.1 point.
describeAsRoot.each([
  { links: 2, weights: [3, 1], connections: 2000, points: 1 },
  { links: 3, weights: [5, 3, 2], connections: 2000, points: 1 },
  { links: 2, weights: [188, 19], connections: 4140, points: 0.1 },
])("$links links weighted $weights", ({ links, weights, connections, points }) => {
  it(`splits ${connections} new connections within ±${points} point of the weights, none failed or unmarked`, async () => {
    await withLab({ links }, async (lab) => {
      await deploy(lab, labSite(lab, { weights }));
      const results = await lab.openConnections(connections, { concurrency: 20 });

      expect(results.filter((r) => !r.ok).map((r) => r.error)).toEqual([]);
      const shares = lab.shares(results);
      const total = weights.reduce((a, b) => a + b, 0);
      lab.links.forEach((l, i) => expect(Math.abs(shares[l.name] - weights[i] / total)).toBeLessThanOrEqual(points / 100));
      expect(await unmarkedConnections(lab, lab.serverAddress)).toBe(0);
    });
  }, 300_000);
});
