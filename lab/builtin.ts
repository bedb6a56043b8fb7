// The built-in lab (`sudo scripts/lab.sh`): two gateways in network namespaces (hq: three uplinks
// 5:3:2, branch: two uplinks 3:1 and dual stack, its IPv6 LAN mapped onto each link's prefix), each with ISP routers, a LAN client, an "internet" server and a
// real sshd on a management port; deployed by the real `pulumi up` through the Gateway component,
// then measured: shares of real connections, and a failover timeline. Everything lives in
// namespaces named mwl-* and in one directory, which `scripts/lab.sh down` removes.
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parse, stringify } from "yaml";
import { stackTargets } from "../cli/drift";
import { fleetTable, runFleet } from "../cli/fleet";
import { progress } from "../cli/progress";
import { statusAll, statusTable } from "../cli/status";
import { requirePulumi } from "../cli/workspace";
import { initSiteStack } from "./stack";
import { runFailover } from "./failover";
import { run } from "./exec";
import { createLab, namespaces, removeNamespaces, type Lab } from "./lab";
import { managePort, type ManagedGateway } from "./managed";
import { managedGateway, type LabGateway6 } from "./site";
import { clientKey } from "./sshd";
import { timelineTable } from "./timeline";

const REPO = resolve(__dirname, "..");
const PREFIX = "mwl-";
const STACK = "lab";
const GATEWAYS: { name: string; weights: number[]; ipv6?: LabGateway6 }[] = [
  { name: "hq", weights: [5, 3, 2] },
  { name: "branch", weights: [3, 1], ipv6: { nat6: "npt" } },
];
/** sshd's privilege separation directory: removed on `down` only if the lab created it. */
const SSHD_RUN = "/run/sshd";
const CREATED_SSHD_RUN = "created-run-sshd";

export const defaultLabDir = () => join(tmpdir(), "multiwan-lab");

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

/** The Pulumi environment of the lab's project: its own state, home and passphrase, inside `dir`. */
function labEnv(dir: string): Record<string, string> {
  return {
    PULUMI_HOME: join(dir, "pulumi-home"),
    PULUMI_BACKEND_URL: `file://${join(dir, "state")}`,
    PULUMI_CONFIG_PASSPHRASE: "multiwan-lab",
  };
}

/** A Pulumi project whose program is this package's index.ts, with the repo's shared defaults. */
function writeProject(dir: string): string {
  const project = join(dir, "project");
  mkdirSync(project);
  mkdirSync(join(dir, "state"));
  const repoProject = parse(readFileSync(join(REPO, "Pulumi.yaml"), "utf8"));
  writeFileSync(join(project, "Pulumi.yaml"), stringify({ ...repoProject, name: "multiwan-lab", main: join(REPO, "index.ts") }));
  return project;
}

async function measureShares(name: string, weights: number[], lab: Lab, say: (s: string) => void, family: 4 | 6 = 4) {
  const results = await lab.openConnections(1000, { concurrency: 20, family });
  const shares = lab.shares(results);
  const total = weights.reduce((a, b) => a + b, 0);
  const v6 = family === 6 ? " IPv6" : "";
  say(`${name}: 1000 new${v6} connections from the LAN, ${results.filter((r) => !r.ok).length} failed`);
  lab.links.forEach((l, i) => say(`  ${l.name}  weight ${weights[i]}  expected ${pct(weights[i] / total)}  measured ${pct(shares[l.name])}${v6 && "  (IPv6)"}`));
}

export async function labUp(dir: string, say: (s: string) => void = console.log): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("the lab needs root: it builds network namespaces (run it with sudo)");
  requirePulumi();
  requirePulumi("pulumi-language-nodejs"); // the lab project runs through it, as a user's does
  await labDown(dir, () => {}); // a previous lab's leftovers
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!existsSync(SSHD_RUN)) writeFileSync(join(dir, CREATED_SSHD_RUN), "");
  Object.assign(process.env, labEnv(dir));
  writeFileSync(join(dir, "env"), Object.entries(labEnv(dir)).map(([k, v]) => `export ${k}=${v}\n`).join(""));

  say(`building the lab in network namespaces ${PREFIX}* (files in ${dir})`);
  const key = await clientKey(dir);
  const gws: ManagedGateway[] = [];
  try {
    for (const [k, g] of GATEWAYS.entries()) {
      const lab = await createLab({ links: g.weights.length, prefix: `${PREFIX}${g.name}`, parent: dir, ipv6: g.ipv6 !== undefined });
      gws.push(await managePort(lab, k, key, { net: "198.18.203", hostIf: `${PREFIX}${g.name}`, parent: dir, detach: true }));
      say(`  ${g.name}: ${g.weights.length} uplinks, weights ${g.weights.join(":")}, sshd on ${gws[k].address}`);
    }
    const project = writeProject(dir);
    const site = { gateways: GATEWAYS.map((g, i) => managedGateway(gws[i], g.name, g.weights, {}, g.ipv6)) };
    initSiteStack(project, STACK, site, key.privateKey);

    say("\npulumi up (stack lab, through the Gateway component, over SSH):");
    const rows = await runFleet("up", [STACK], { cwd: project, parallel: 1, progress: progress([STACK], process.stdout) });
    say(fleetTable(rows));
    if (rows[0].result !== "ok") throw new Error("pulumi up failed: the lab is left as it is for a look; `scripts/lab.sh down` removes it");
    await new Promise((r) => setTimeout(r, 1500)); // the health daemons' first rounds

    say("\nshares of new connections:");
    for (const [i, g] of GATEWAYS.entries()) {
      await measureShares(g.name, g.weights, gws[i].lab, say);
      if (g.ipv6) await measureShares(g.name, g.weights, gws[i].lab, say, 6);
    }

    const hq = gws[0].lab;
    // What `multiwan status` shows while hq's LAN holds 20 open connections.
    const held = await hq.longLived(20, { durationMs: 30_000 });
    try {
      say(`\nmultiwan status --stack ${STACK} (hq's LAN holding ${held.established} open connections):`);
      say(statusTable(await statusAll(await stackTargets(STACK, project), 4)));
    } finally {
      await held.stop();
    }

    const plan = { link: "isp1", breakAt: 3, restoreAt: 10, seconds: 18, ratePerSec: 20 };
    say(`\nfailover on hq: ${plan.ratePerSec} new connections/s; isp1 breaks upstream at ${plan.breakAt} s, comes back at ${plan.restoreAt} s`);
    const run = await runFailover(hq, plan);
    say(timelineTable(run.bins, hq.links.map((l) => l.name)).replace(/^/gm, "  "));
    for (const t of run.transitions) say(`  health daemon: ${t.link} ${t.status} at ${t.at.toFixed(2)} s`);
    say(`  ${run.failed} of ${run.results.length} connections failed; the last one started ${run.lastFailAfterBreak.toFixed(2)} s after the break`);

    say(`\nThe lab stays up. As root, in ${REPO}:`);
    say(`  . ${join(dir, "env")}     # the lab project's Pulumi state and passphrase`);
    say(`  node bin/multiwan.js status --cwd ${project} --stack ${STACK}`);
    say(`  node bin/multiwan.js drift --cwd ${project} --stack ${STACK}`);
    say(`  scripts/lab.sh down${dir === defaultLabDir() ? "" : ` --dir ${dir}`}`);
  } finally {
    // The lab's own traffic and server processes end; namespaces, sshd and daemons stay for `down`.
    for (const g of gws) await g.lab.release();
  }
}

/** Removes every mwl-* namespace with all that runs in it (sshd, daemons), and the lab's directory. */
export async function labDown(dir: string, say: (s: string) => void = console.log): Promise<void> {
  // The management links' host ends first: a deleted namespace takes its veth pairs along only
  // later, in the kernel's own time.
  const links = (await run(["ip", "-o", "link", "show"])).stdout.split("\n").map((l) => l.split(": ")[1]?.split("@")[0] ?? "");
  for (const link of links.filter((l) => l.startsWith(PREFIX))) await run(["ip", "link", "del", link], { check: true });
  const ours = (await namespaces()).filter((n) => n.startsWith(PREFIX));
  const problems = await removeNamespaces(ours);
  if (existsSync(join(dir, CREATED_SSHD_RUN))) {
    try {
      rmdirSync(SSHD_RUN);
    } catch {
      // not empty: an sshd of the host's uses it now
    }
  }
  rmSync(dir, { recursive: true, force: true });
  if (problems.length) throw new Error(`lab down: ${problems.join("; ")}`);
  say(`removed ${ours.length} namespaces and ${dir}`);
}
