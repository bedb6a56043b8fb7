// A push onto a gateway whose disk is full: the gateway's root is a small tmpfs (its /run a tmpfs
// of its own, as on real hosts), filled to leave 0, 1, 2, … pages free, so that each step of the
// apply (unpacking, installing the bundle, the system files after the rules changed) in turn is the
// one that fails. Every failed push must leave exactly the previous state: rules, routes, files.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { pushProvider } from "../../components/push";
import { gatewayState } from "../../lab/deploy";
import { withLab } from "../../lab/lab";
import { managePort } from "../../lab/managed";
import { labPushInputs } from "../../lab/push-inputs";
import { managedGateway } from "../../lab/site";
import { clientKey } from "../../lab/sshd";
import { describeAsRoot } from "../helpers/root";

/** Bounds the sweep: the bundle takes about 20 pages, and a push needs room for two copies. */
const MAX_FREE_PAGES = 80;

/** Every file under `root` but the filler, the logs, /run and the metrics file (the health daemon's, rewritten every round), with its hash. */
function files(root: string): Record<string, string> {
  const skip = /^(filler|var\/log\/|run\/|var\/lib\/prometheus\/)/;
  const paths = readdirSync(root, { recursive: true, encoding: "utf8" }).filter((p) => !skip.test(p) && statSync(join(root, p)).isFile());
  return Object.fromEntries(paths.sort().map((p) => [p, createHash("sha256").update(readFileSync(join(root, p))).digest("hex")]));
}

describeAsRoot("a push onto a full disk", () => {
  it("fails at whichever step runs out of space and leaves exactly the previous state", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const scratch = mkdtempSync(join(tmpdir(), "mwt-disk-"));
      const root = lab.root;
      const filler = join(root, "filler");
      const mounted: string[] = [];
      const mount = (dir: string, size: string) => {
        execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0755`, "tmpfs", dir]);
        mounted.unshift(dir);
      };
      let stopSshd = async () => {};
      try {
        // Before sshd starts: its namespace keeps the mounts it saw (this host's mounts are private).
        mount(root, "512k");
        mkdirSync(join(root, "run"));
        mount(join(root, "run"), "1m");
        const key = await clientKey(scratch);
        const g = await managePort(lab, 0, key);
        stopSshd = () => g.sshd.stop();
        const push = (weights: number[]) =>
          pushProvider.create(labPushInputs({ gateways: [managedGateway(g, "gw1", weights, { rollbackAfter: 5 })] }, key.privateKey)).then(
            () => "pushed",
            (e: Error) => e.message,
          );

        expect(await push([3, 1])).toBe("pushed");
        const before = { state: await gatewayState(lab), files: files(root) };
        const failures: string[] = [];
        let pushed = false;
        for (let pages = 0; pages <= MAX_FREE_PAGES && !pushed; pages++) {
          const { bavail, bsize } = statfsSync(root);
          if (bavail > pages) execFileSync("fallocate", ["-l", String((bavail - pages) * bsize), filler]);
          const message = await push([1, 1]);
          rmSync(filler, { force: true });
          pushed = message === "pushed";
          if (pushed) break;
          expect(message).toMatch(/^gw1: apply failed, the previous state is kept: /);
          expect({ state: await gatewayState(lab), files: files(root) }, `${pages} pages free: ${message}`).toEqual(before);
          failures.push(message.split("\n")[0].replace("gw1: apply failed, the previous state is kept: ", ""));
        }
        console.log(`full disk, failed pushes (each left the previous state): ${[...new Set(failures)].map((f) => `${failures.filter((x) => x === f).length}× ${f}`).join("; ")}`);

        // Every step had its turn: the unpacking, the bundle's copy, and a step after the rules changed.
        expect(pushed).toBe(true);
        expect(new Set(failures)).toEqual(
          new Set([
            `cannot unpack the bundle into ${root}/var/lib/multiwan (disk full?); nothing was changed`,
            `could not install the bundle under ${root} (disk full?); nothing was changed`,
            "apply failed; the previous state was restored",
          ]),
        );
      } finally {
        // The health daemon and a watchdog keep files open in the root: remove ends them.
        rmSync(filler, { force: true });
        await lab.exec(lab.ns.gw, ["sh", "-c", `[ ! -f ${root}/etc/multiwan/apply.sh ] || sh ${root}/etc/multiwan/apply.sh remove`]);
        await stopSshd();
        for (const dir of mounted) execFileSync("umount", [dir]);
        rmSync(scratch, { recursive: true, force: true });
      }
    });
  }, 240_000);
});
