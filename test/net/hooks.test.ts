// Link hooks (/etc/multiwan-hooks.d/* with LINK up|down) run off the probe loop, one transition at
// a time in the order of the transitions; a hung hook is killed at the timeout, with its children.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { expect, it } from "vitest";
import { LAYOUT, under } from "../../components/layout";
import { HEALTH_DEFAULTS } from "../../components/config";

const HOOK_TIMEOUT = HEALTH_DEFAULTS.hookTimeout;
import { deploy, labSite } from "../../lab/deploy";
import { isRunning } from "../../lab/exec";
import { healthState } from "../../lab/failover";
import { withLab } from "../../lab/lab";
import { describeAsRoot } from "../helpers/root";
import { HealthDaemon } from "./daemon";
import { healthLog, waitFor } from "./health";

const FAST = { interval: 0.1, timeout: 0.25, down: 3, up: 10 };

describeAsRoot("link hooks", () => {
  it("a hung hook is killed at the timeout; the transitions behind it keep their order; each hook's exit and duration is logged", async () => {
    await withLab({ links: 2 }, async (lab) => {
      const hooks = under(lab.root, LAYOUT.hooksDir);
      const hooked = (file: string) => `${lab.root}/${file}`;
      mkdirSync(hooks, { recursive: true });
      const hook = (name: string, body: string) => {
        writeFileSync(`${hooks}/${name}`, `#!/bin/sh\n${body}\n`);
        chmodSync(`${hooks}/${name}`, 0o755);
      };
      // The first `down` hangs in a child process, as a hook stuck on the network would.
      hook("10-hang", `[ "$2" = down ] && [ ! -e ${hooked("hung")} ] || exit 0\ntouch ${hooked("hung")}\nsleep 600 &\necho $! > ${hooked("hung")}\nwait`);
      hook("20-record", `echo "$1 $2" >> ${hooked("transitions")}`);
      hook("30-fail", "exit 3");
      await deploy(lab, labSite(lab, { weights: [1, 1], health: FAST }));
      HealthDaemon.start(lab);
      await waitFor("the daemon's first state", () => healthState(lab) !== undefined, 5000);

      // Two flaps while the first hook hangs: the daemon sees all four transitions at once.
      const isp1 = () => healthState(lab)?.links[0].status;
      await lab.breakUplink("isp1");
      await waitFor("isp1 down", () => isp1() === "down", 2000);
      const firstDown = Date.now();
      for (let flap = 0; flap < 2; flap++) {
        await lab.restoreUplink("isp1");
        await waitFor("isp1 up", () => isp1() === "up", 3000);
        if (flap === 1) break;
        await lab.breakUplink("isp1");
        await waitFor("isp1 down", () => isp1() === "down", 2000);
      }
      expect(Date.now() - firstDown).toBeLessThan(HOOK_TIMEOUT * 1000 - 2000);
      expect(existsSync(hooked("transitions"))).toBe(false); // everything waits behind the hung hook

      const transitions = () => (existsSync(hooked("transitions")) ? readFileSync(hooked("transitions"), "utf8") : "");
      await waitFor("the hooks of all four transitions", () => transitions().split("\n").length > 4, HOOK_TIMEOUT * 1000 + 5000);
      expect(Date.now() - firstDown).toBeGreaterThanOrEqual(HOOK_TIMEOUT * 1000);
      expect(transitions()).toBe("isp1 down\nisp1 up\nisp1 down\nisp1 up\n");
      await waitFor("the last hook's log line", () => (healthLog(lab).match(/hook 30-fail/g) ?? []).length === 4, 2000);

      const log = healthLog(lab);
      const hang = new RegExp(`hook 10-hang isp1 down: killed at the ${HOOK_TIMEOUT} s timeout \\(exit 124 after (\\d+) ms\\)`).exec(log);
      expect(hang).not.toBeNull();
      expect(Number(hang![1])).toBeGreaterThanOrEqual(HOOK_TIMEOUT * 1000);
      expect(Number(hang![1])).toBeLessThan(HOOK_TIMEOUT * 1000 + 1000);
      expect(isRunning(Number(readFileSync(hooked("hung"), "utf8")))).toBe(false); // the hook's child went with it
      expect([...log.matchAll(/hook 30-fail (isp1 \w+): exit 3 after \d+ ms/g)].map((m) => m[1])).toEqual(["isp1 down", "isp1 up", "isp1 down", "isp1 up"]);
      expect(log.match(/hook 20-record isp1 \w+: exit 0 after \d+ ms/g)).toHaveLength(4);
      expect(log.match(/hook 10-hang isp1 \w+: exit 0 after \d+ ms/g)).toHaveLength(3);
    });
  }, 60_000);
});
