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
import { labGateway, type LabGateway6 } from "./site";

export type { LabGateway6, Nat6 } from "./site";

export interface LabSiteOptions {
  weights?: number[];
  /** More fields of each link, by position (e.g. `{ tier: 2, failback: "move" }`). */
  links?: (Record<string, unknown> | undefined)[];
  balance?: Record<string, unknown>;
  health?: Record<string, unknown>;
  /**
   * Dual stack (a lab built with `ipv6`): the LAN's IPv6 networks, each link's gateway6, address6,
   * prefix6 (npt, none) and nat6, IPv6 probes to 2001:db8:5e::1.
   */
  ipv6?: LabGateway6;
}

/** A site config for the lab's gateway: every lab link, SNAT to its address, probes to the server. */
export function labSite(lab: Lab, o: LabSiteOptions = {}) {
  const gw = labGateway(lab, "labgw", { host: "198.18.200.2", insecureSkipHostKeyCheck: true }, o.weights, o.ipv6);
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
  const saved = (text: string) => {
    let table = "";
    return text
      .split("\n")
      .flatMap((line) => {
        if (line.startsWith("*")) table = line.slice(1);
        const builtinAccept = /^:[A-Z]+ ACCEPT /.test(line);
        return line.startsWith("-A") || (line.startsWith(":") && !builtinAccept) ? [`${table} ${line.replace(/ \[\d+:\d+\]$/, "")}`] : [];
      })
      .join("\n");
  };
  const iptables = saved(await sh("iptables-save"));
  return {
    iptables,
    rules: await sh("ip rule show"),
    routes: await sh("ip route show table all | grep -v '^local\\|^broadcast\\|^multicast\\|^fe80\\|^ff00' || true"),
    // A dual-stack lab's IPv6 side (link-local, multicast and local routes are the kernel's own).
    ...(lab.ipv6
      ? {
          ip6tables: saved(await sh("ip6tables-save")),
          rules6: await sh("ip -6 rule show"),
          routes6: await sh("ip -6 route show table all | grep -v '^local \\|^multicast \\|^fe80::/64 \\|^ff00::/8 \\|^anycast ' || true"),
        }
      : {}),
  };
}

/**
 * The gateway's conntrack entries of LAN TCP connections to `dst` (either family: an IPv6 `dst`
 * lists the IPv6 table, from the LAN's own IPv6 network), one line each.
 */
export async function lanConnections(lab: Lab, dst: string): Promise<string[]> {
  const v6 = dst.includes(":");
  const args = v6 ? ["-f", "ipv6", "-s", lab.lanInfo.network6!] : ["-s", lab.lanInfo.network];
  const out = (await lab.exec(lab.ns.gw, ["conntrack", "-L", "-p", "tcp", ...args, "-d", dst])).stdout;
  return out.split("\n").filter((l) => l.includes("mark="));
}

/** A conntrack line's mark. */
export const markOf = (line: string): number => Number(/mark=(\d+)/.exec(line)![1]);

/** Conntrack entries of LAN connections to `dst` whose mark has none of `mask`'s bits (multiwan's by default). */
export async function unmarkedConnections(lab: Lab, dst: string, mask = 0xff00): Promise<number> {
  return (await lanConnections(lab, dst)).filter((l) => (markOf(l) & mask) === 0).length;
}
