// A push whose SSH session drops in the middle of an apply that cuts the gateway's management path
// (the client killed, or the sshd session killed on the gateway): apply.sh runs on detached, the
// gateway rolls itself back within rollbackAfter and is reachable again, and a push that saw its
// session die says the outcome is pending, never that the previous state is kept.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { LAYOUT, under } from "../../components/layout";
import { pushProvider } from "../../components/push";
import { runRemote } from "../../components/remote";
import { gatewayState } from "../../lab/deploy";
import { withManagedGateways } from "../../lab/managed";
import { labPushInputs } from "../../lab/push-inputs";
import { managedGateway } from "../../lab/site";
import { describeAsRoot } from "../helpers/root";

const ROLLBACK_AFTER = 5;
const REPO = join(__dirname, "../..");
/** How long the test holds the gateway's lock while an apply waits for it. */
const LOCK_HOLD_MS = 1000;

type Point = "session" | "lock" | "armed";
/** Where the session drops: once the gateway accepted it; while apply.sh waits for the lock; once its rollback is armed. */
const DROPS: { side: "client" | "server"; at: Point }[] = [
  { side: "client", at: "session" },
  { side: "client", at: "lock" },
  { side: "client", at: "armed" },
  { side: "server", at: "session" },
  { side: "server", at: "lock" },
  { side: "server", at: "armed" },
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every `everyMs` for at most `ms`; its last answer. */
async function waitFor(check: () => boolean | Promise<boolean>, ms: number, everyMs = 20): Promise<boolean> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(everyMs)) if (await check()) return true;
  return check();
}

const cmdline = (pid: string) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return ""; // not a process, or gone meanwhile
  }
};

const killIfAlive = (pid: number) => {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // ended meanwhile (the monitor takes its session process along)
  }
};

/** The per-connection processes of an sshd (privilege-separation monitor and session), by /proc. */
function sshdSessions(listener: number): number[] {
  const procs = readdirSync("/proc").flatMap((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const [, comm, rest] = /^\d+ \((.*)\) (.*)$/s.exec(stat)!;
      return [{ pid: Number(pid), comm, ppid: Number(rest.split(" ")[1]) }];
    } catch {
      return []; // not a process, or gone meanwhile
    }
  });
  const sessions: number[] = [];
  for (let parents = [listener]; parents.length; ) {
    parents = procs.filter((p) => parents.includes(p.ppid) && p.comm === "sshd").map((p) => p.pid);
    sessions.push(...parents);
  }
  return sessions;
}

/** A gateway state without the balancing chain's rules, which the health daemon swaps. */
const unbalanced = (s: Awaited<ReturnType<typeof gatewayState>>) => ({ ...s, iptables: s.iptables.replace(/^.*-A MWAN-BALANCE .*\n?/gm, "") });

describeAsRoot("a push whose SSH session drops mid-apply", () => {
  it("never leaves the gateway cut off: it rolls back within rollbackAfter, and the push says the outcome is pending", async () => {
    await withManagedGateways(["internet"], async ([g], key) => {
      const { lab } = g;
      const site = (cut: boolean) => {
        const s = { gateways: [managedGateway(g, "gw1", [1, 1], { rollbackAfter: ROLLBACK_AFTER })] };
        if (cut) s.gateways[0].links[1].gateway = "198.51.100.5"; // management's link: a next hop nobody answers
        return s;
      };
      const good = labPushInputs(site(false), key.privateKey);
      const cut = labPushInputs(site(true), key.privateKey);
      await pushProvider.create(good);
      const before = await gatewayState(lab);
      const run = (name: string) => join(lab.root, "run/multiwan", name);
      const pendingFile = under(lab.root, LAYOUT.pendingFile);
      const accepted = () => (g.sshd.log().match(/Accepted publickey/g) ?? []).length;
      const reached: Record<Point, (sessions: number) => boolean> = {
        session: (sessions) => accepted() > sessions,
        lock: () => existsSync(run("")) && readdirSync(run("")).some((f) => f.startsWith("out.")),
        armed: () => existsSync(pendingFile),
      };
      const stage = join(lab.root, "var/lib/multiwan");
      const stagedApplyRunning = () => readdirSync("/proc").some((pid) => cmdline(pid).includes(`${stage}/push.`));
      const applyLog = join(lab.root, "var/log/multiwan-apply.log");
      const watchdogRollbacks = () => (existsSync(applyLog) ? readFileSync(applyLog, "utf8").match(/"result":"rolled-back"/g)?.length ?? 0 : 0);
      const report = [];

      // Each drop point twice: a race that loses once in a while shows up.
      for (const drop of [...DROPS, ...DROPS]) {
        const rollbacks = watchdogRollbacks();
        let lock: ChildProcess | undefined;
        if (drop.at === "lock") {
          // One process holding it (no fork), so that killing it releases the lock.
          lock = spawn("flock", ["--no-fork", run("lock"), "sh", "-c", "echo held; exec sleep 30"], { stdio: ["ignore", "pipe", "ignore"] });
          await new Promise((r) => lock!.stdout!.once("data", r));
        }
        const sessions = accepted();
        let armedAt: number | undefined;
        const armed = () => (existsSync(pendingFile) && (armedAt ??= Date.now()), armedAt !== undefined);
        let client: ChildProcess | undefined;
        let message: Promise<string> | undefined;
        if (drop.side === "client") {
          client = spawn(process.execPath, ["--import", "tsx", join(__dirname, "push-child.ts")], { cwd: REPO, stdio: ["pipe", "ignore", "inherit"] });
          client.stdin!.end(JSON.stringify(cut)); // the key on stdin, never in a command line
        } else {
          message = pushProvider.create(cut).then(() => "pushed", (e: Error) => e.message);
        }
        try {
          expect(await waitFor(() => (armed(), reached[drop.at](sessions)), 20_000), `${drop.at} reached`).toBe(true);
          if (client) client.kill("SIGKILL");
          else for (const pid of sshdSessions(g.sshd.pid)) killIfAlive(pid);
          if (lock) await sleep(LOCK_HOLD_MS);
        } finally {
          lock?.kill();
          client?.kill("SIGKILL");
        }
        // Once the session is gone on the gateway too, an apply either runs or never will. Rolled
        // back: no staged apply running, no rollback pending, the rules and routes of before (but
        // the balancing chain: the health daemon saw the cut link down and brings it back later).
        expect(await waitFor(() => sshdSessions(g.sshd.pid).length === 0, 20_000), "sessions ended").toBe(true);
        const restored = await waitFor(
          async () => {
            armed();
            return !stagedApplyRunning() && !existsSync(pendingFile) && JSON.stringify(unbalanced(await gatewayState(lab))) === JSON.stringify(unbalanced(before));
          },
          (ROLLBACK_AFTER + 10) * 1000,
          100,
        );
        const backAt = Date.now();
        const reachable = await runRemote({ ...good.target, privateKey: key.privateKey, connectTimeout: 5 }, "true").then((r) => r.code === 0, () => false);
        report.push({
          ...drop,
          restored,
          reachable,
          // Detached: an apply that lost its session before it changed anything still went on, and its watchdog undid it.
          wentOn: drop.at === "session" || (armedAt !== undefined && (await waitFor(() => watchdogRollbacks() > rollbacks, 5000, 100))),
          // Past the login the apply always reaches its arming (it goes on detached): it must be seen.
          // The rollback itself takes a moment more, longer while the health daemon swaps a variant
          // (it holds the same lock): rollbackAfter plus 4 s.
          rolledBackInTime: armedAt === undefined ? drop.at === "session" : backAt - armedAt <= (ROLLBACK_AFTER + 4) * 1000,
          message: message ? await message : "(client killed)",
        });
        const outcome = armedAt ? `rolled back ${backAt - armedAt} ms after the arming` : "nothing applied";
        console.log(`session dropped (${drop.side}, ${drop.at}): ${outcome}; the push said: ${report.at(-1)!.message}`);
      }

      for (const r of report) {
        expect({ ...r, message: undefined }, r.message).toEqual({ ...r, message: undefined, restored: true, reachable: true, wentOn: true, rolledBackInTime: true });
        if (r.side === "server") {
          // Pending, or (the kill missed the apply's session, the confirm came after the watchdog)
          // not kept: never the previous state "kept" while new rules may be live.
          expect(r.message).toMatch(/the outcome is pending: unless the apply is confirmed, the gateway rolls back to its previous state within 5 s|could not confirm them \(nothing to confirm for this token: the apply was rolled back or replaced\); they are not kept/);
          expect(r.message).not.toMatch(/previous state is kept/);
        }
      }
      // …and the health daemon, which had seen the cut link down, puts the full split back.
      expect(await waitFor(async () => JSON.stringify(await gatewayState(lab)) === JSON.stringify(before), 20_000, 250)).toBe(true);
      expect(readdirSync(stage).filter((f) => f.startsWith("push."))).toEqual([]); // no staged copy left
      expect(readFileSync(join(lab.root, "etc/multiwan/ip.batch"), "utf8")).toBe(good.files["ip.batch"]);
    });
  }, 180_000);
});
