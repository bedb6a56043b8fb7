// Lab timings, for planning test budgets: `npx tsx lab/measure.ts [rounds]`.
// Measures creating + destroying a 3-link lab, and 2000 LAN connections through MASQUERADE on wan1.
import { createLab } from "./lab";

async function main(): Promise<void> {
  const rounds = Math.min(Math.max(Number(process.argv[2] ?? 3), 1), 20);
  for (let round = 1; round <= rounds; round++) {
    const t0 = performance.now();
    const lab = await createLab({ links: 3 });
    const built = performance.now();
    let connections = "";
    try {
      await lab.exec("gw", ["sysctl", "-qw", "net.ipv4.ip_forward=1"], { check: true });
      await lab.exec("gw", ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wan1", "-j", "MASQUERADE"], { check: true });
      const c0 = performance.now();
      const results = await lab.openConnections(2000);
      const failed = results.filter((r) => !r.ok).length;
      connections = `2000 connections ${Math.round(performance.now() - c0)} ms (${failed} failed)`;
    } finally {
      const d0 = performance.now();
      await lab.destroy();
      const destroyMs = performance.now() - d0;
      console.log(
        `round ${round}: create ${Math.round(built - t0)} ms, destroy ${Math.round(destroyMs)} ms, ` +
          `create+destroy ${Math.round(built - t0 + destroyMs)} ms; ${connections}`,
      );
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
