// The README's main job, run as the README says: `scripts/lab.sh` (install what is missing, then
// lab/main.ts) builds the built-in lab, deploys it with the real engine and measures it;
// `scripts/lab.sh down` must then leave the machine as it found it: no namespace, no interface or
// route, no process and no file of the lab's.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { expect, it } from "vitest";
import { defaultLabDir } from "../../lab/builtin";
import { describeWithHosts, REPO } from "../helpers/engine";

const labSh = (...args: string[]) => spawnSync("bash", [join(REPO, "scripts/lab.sh"), ...args], { encoding: "utf8", timeout: 300_000 });
const sh = (cmd: string) => execFileSync("sh", ["-c", cmd], { encoding: "utf8" });

const cmdline = (pid: string) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
  } catch {
    return "";
  }
};

/** What the lab could leave behind, as a comparable snapshot. */
function machine() {
  return {
    namespaces: sh("ip netns list").split("\n").map((l) => l.split(" ")[0]).filter(Boolean).sort(),
    links: sh("ip -o link show").split("\n").map((l) => l.split(":")[1]?.trim()).filter(Boolean).sort(),
    routes: sh("ip route show table all").split("\n").filter((l) => !/^(local|broadcast|multicast) /.test(l)).sort(),
    rules: sh("ip rule show"),
    iptables: sh("iptables-save | grep -v '^#' || true"),
    // Every process the lab may start: sshd, health daemon, apply.sh watchdog, traffic agents, pulumi.
    processes: readdirSync("/proc")
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => /multiwan|mwl-|agent\.cjs|pulumi|sshd_config|lab\.sh|lab\/main/.test(cmdline(p)) && !cmdline(p).includes("vitest")),
    // Only the lab's own entries: other processes on the machine come and go in tmpdir too.
    tmp: readdirSync(tmpdir()).filter((f) => f === basename(defaultLabDir()) || f.startsWith("mwl-")).sort(),
    pulumiHome: existsSync(join(homedir(), ".pulumi")),
  };
}

// The lab is deployed as a user's project is, through its language host.
describeWithHosts(["pulumi-language-nodejs"], "the built-in lab", () => {
  it("deploys the built-in lab, shows exact shares, status and a failover, and lab down leaves nothing behind", () => {
    const before = machine();
    let down;
    try {
      const up = labSh();
      console.log(up.stdout, up.stderr);
      expect(up.status, up.stderr).toBe(0);
      // Both gateways deployed by one `pulumi up` of the lab stack.
      expect(up.stdout).toMatch(/^lab\s+2\s+5 create\s+.*ok$/m);
      // Measured equals expected, link by link: 5:3:2 on hq, 3:1 on branch.
      const shares = [...up.stdout.matchAll(/^\s+(isp\d)\s+weight (\d+)\s+expected ([\d.]+) %\s+measured ([\d.]+) %$/gm)];
      expect(shares.map((m) => `${m[1]} ${m[3]} ${m[4]}`)).toEqual([
        "isp1 50.0 50.0",
        "isp2 30.0 30.0",
        "isp3 20.0 20.0",
        "isp1 75.0 75.0",
        "isp2 25.0 25.0",
      ]);
      expect(up.stdout).toMatch(/^hq: 1000 new connections from the LAN, 0 failed$/m);
      // branch is dual stack: its IPv6 connections split 3:1 too.
      expect(up.stdout).toMatch(/^branch: 1000 new IPv6 connections from the LAN, 0 failed$/m);
      expect([...up.stdout.matchAll(/^\s+(isp\d)\s+weight \d+\s+expected ([\d.]+) %\s+measured ([\d.]+) %  \(IPv6\)$/gm)].map((m) => `${m[1]} ${m[2]} ${m[3]}`))
        .toEqual(["isp1 75.0 75.0", "isp2 25.0 25.0"]);
      // `multiwan status` over SSH while hq's LAN holds 20 connections: 10 / 6 / 4 by conntrack.
      for (const [link, conns, share] of [["isp1", 10, "50.0"], ["isp2", 6, "30.0"], ["isp3", 4, "20.0"]]) {
        expect(up.stdout).toMatch(new RegExp(`^lab\\s+hq\\s+${link}\\s+1\\s+up\\s+yes\\s+.*\\s${conns}\\s+${share} %$`, "m"));
      }
      // The failover: the daemon takes isp1 out within a few seconds of the break at 3 s and puts
      // it back after the restore at 10 s; failures stop soon after the break.
      const down1 = Number(/health daemon: isp1 down at ([\d.]+) s/.exec(up.stdout)?.[1]);
      const up1 = Number(/health daemon: isp1 up at ([\d.]+) s/.exec(up.stdout)?.[1]);
      expect(down1).toBeGreaterThan(3);
      expect(down1).toBeLessThan(6);
      expect(up1).toBeGreaterThan(10);
      expect(up1).toBeLessThan(16);
      const last = Number(/the last one started ([\d.]+) s after the break/.exec(up.stdout)?.[1]);
      expect(last).toBeLessThan(3.5);
      // The lab stays up for a look until `lab down`.
      expect(machine().namespaces.filter((n) => n.startsWith("mwl-"))).toHaveLength(11);
    } finally {
      down = labSh("down");
    }
    expect(down.status, down.stderr).toBe(0);
    expect(down.stdout).toMatch(/^removed 11 namespaces and /m);
    // A process on its way out (a plugin of the last pulumi run) may take a moment; one that stays is
    // a leak, named with its command line.
    let after = machine();
    for (let i = 0; i < 25 && JSON.stringify(after) !== JSON.stringify(before); i++) {
      spawnSync("sleep", ["0.2"]);
      after = machine();
    }
    expect(after, after.processes.filter((p) => !before.processes.includes(p)).map((p) => `${p}: ${cmdline(p)}`).join("\n")).toEqual(before);
  });
});
