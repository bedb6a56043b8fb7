// Deploying multiwan onto a lab gateway the way a real one gets it: render the bundle, then run
// its apply.sh inside the gateway's namespace with the lab's scratch root.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeBundle } from "../components/bundle-files";
import { parseSite } from "../components/config";
import { planGateway } from "../components/plan";
import { renderBundle, type Bundle } from "../components/render";
import type { Lab } from "./lab";
import { labGateway } from "./site";

export interface LabSiteOptions {
  weights?: number[];
  /** More fields of each link, by position (e.g. `{ tier: 2, failback: "move" }`). */
  links?: (Record<string, unknown> | undefined)[];
  balance?: Record<string, unknown>;
  health?: Record<string, unknown>;
}

/** A site config for the lab's gateway: every lab link, SNAT to its address, probes to the server. */
export function labSite(lab: Lab, o: LabSiteOptions = {}) {
  const gw = labGateway(lab, "labgw", { host: "198.18.200.2", insecureSkipHostKeyCheck: true }, o.weights);
  const links = gw.links.map((l, i) => ({ ...l, ...o.links?.[i] }));
  return { gateways: [{ ...gw, links, ...(o.balance ? { balance: o.balance } : {}), ...(o.health ? { health: o.health } : {}) }] };
}

export function renderLabBundle(site: unknown): Bundle {
  return renderBundle(planGateway(parseSite(site).gateways[0]));
}

export interface ApplyOptions {
  /** Let apply.sh start (and remove stop) the health daemon, as on a host without systemd. */
  daemon?: boolean;
}

/** Write `bundle` to a scratch dir and run `apply.sh [command]` in the gateway namespace. */
export async function runApply(lab: Lab, bundle: Bundle, command = "apply", o: ApplyOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), "mwt-bundle-"));
  try {
    writeBundle(dir, bundle);
    const env = [`MULTIWAN_ROOT=${lab.root}`, ...(o.daemon ? [] : ["MULTIWAN_NO_SYSTEMD=1"])];
    return await lab.exec(lab.ns.gw, ["env", ...env, "sh", join(dir, "apply.sh"), command], { timeoutMs: 30_000 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Render and apply; throws with apply.sh's own words if it fails. */
export async function deploy(lab: Lab, site: unknown, o: ApplyOptions = {}): Promise<Bundle> {
  const bundle = renderLabBundle(site);
  const r = await runApply(lab, bundle, "apply", o);
  if (r.code !== 0) throw new Error(`apply.sh failed (${r.code}): ${r.stderr}`);
  return bundle;
}

/**
 * The gateway's netfilter and routing state for before/after comparisons: rules and non-default
 * chains per table (no counters; a table that only exists empty counts as absent), policy rules,
 * and routes of every table.
 */
export async function gatewayState(lab: Lab) {
  const sh = async (script: string) => (await lab.sh(lab.ns.gw, script, { check: true })).stdout;
  let table = "";
  const iptables = (await sh("iptables-save"))
    .split("\n")
    .flatMap((line) => {
      if (line.startsWith("*")) table = line.slice(1);
      const builtinAccept = /^:[A-Z]+ ACCEPT /.test(line);
      return line.startsWith("-A") || (line.startsWith(":") && !builtinAccept) ? [`${table} ${line.replace(/ \[\d+:\d+\]$/, "")}`] : [];
    })
    .join("\n");
  return {
    iptables,
    rules: await sh("ip rule show"),
    routes: await sh("ip route show table all | grep -v '^local\\|^broadcast\\|^multicast\\|^fe80\\|^ff00' || true"),
  };
}

/** Conntrack entries of LAN connections to `dst` whose mark has none of `mask`'s bits (multiwan's by default). */
export async function unmarkedConnections(lab: Lab, dst: string, mask = 0xff00): Promise<number> {
  const out = (await lab.exec(lab.ns.gw, ["conntrack", "-L", "-p", "tcp", "-s", lab.lanInfo.network, "-d", dst])).stdout;
  return out
    .split("\n")
    .filter((l) => l.includes("mark="))
    .filter((l) => (Number(/mark=(\d+)/.exec(l)![1]) & mask) === 0).length;
}
