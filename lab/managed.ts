// Lab gateways managed the way real ones are: each lab's gateway namespace gets a management veth
// to the host (where the Pulumi engine runs) and a real sshd on it, all authorizing one client key.
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLab, type Lab } from "./lab";
import { clientKey, startSshd, type ClientKey, type Sshd } from "./sshd";

export interface ManagedGateway {
  lab: Lab;
  sshd: Sshd;
  /** The gateway's management address (sshd listens here). */
  address: string;
}

/** A command in the host's (root) namespace. */
const host = (argv: string[]) => execFileSync(argv[0], argv.slice(1), { timeout: 10_000, stdio: "pipe" });

export interface PortOptions {
  /** The host's /24 for management links; default 198.18.201 (tests), the built-in lab uses its own. */
  net?: string;
  /** Host-side interface name; default from this process's pid and k. */
  hostIf?: string;
  /** Where sshd's scratch directory goes, and whether it outlives this process (see startSshd). */
  parent?: string;
  detach?: boolean;
}

/** Over a management port: host side NET.(8k+1)/29, gateway side .(8k+2) on its `mgmt0`. */
export async function managePort(lab: Lab, k: number, key: ClientKey, o: PortOptions = {}): Promise<ManagedGateway> {
  const net = o.net ?? "198.18.201";
  const hostIf = o.hostIf ?? `mwm${process.pid % 100000}x${k}`.slice(0, 15);
  const address = `${net}.${8 * k + 2}`;
  host(["ip", "link", "add", hostIf, "type", "veth", "peer", "name", "mgmt0", "netns", lab.ns.gw]);
  host(["ip", "addr", "add", `${net}.${8 * k + 1}/29`, "dev", hostIf]);
  host(["ip", "link", "set", hostIf, "up"]);
  await lab.sh(lab.ns.gw, `ip addr add ${address}/29 dev mgmt0 && ip link set mgmt0 up`, { check: true });
  const sshd = await startSshd({ netns: lab.ns.gw, address, client: key, parent: o.parent, detach: o.detach });
  return { lab, sshd, address };
}

/**
 * Over the internet, as a remote site is: the host reaches the lab's `net` namespace over a veth
 * (198.18.202.0/30) and from there the gateway's address on link 2, which is also the gateway's
 * main default route. Replies therefore depend on multiwan's routing of that link, so a wrong
 * next hop for it cuts the management path. Only one lab per test can be managed this way.
 */
async function manageOverInternet(lab: Lab, key: ClientKey): Promise<ManagedGateway> {
  const hostIf = `mwi${process.pid % 100000}`;
  const link2 = lab.links[1];
  host(["ip", "link", "add", hostIf, "type", "veth", "peer", "name", "mgmt0", "netns", lab.ns.net]);
  host(["ip", "addr", "add", "198.18.202.1/30", "dev", hostIf]);
  host(["ip", "link", "set", hostIf, "up"]);
  await lab.sh(lab.ns.net, "ip addr add 198.18.202.2/30 dev mgmt0 && ip link set mgmt0 up && sysctl -qw net.ipv4.ip_forward=1", { check: true });
  host(["ip", "route", "add", link2.subnet, "via", "198.18.202.2"]);
  await lab.sh(lab.ns.gw, `ip route replace default via ${link2.gateway} dev ${link2.interface}`, { check: true });
  const sshd = await startSshd({ netns: lab.ns.gw, address: link2.address, client: key });
  return { lab, sshd, address: link2.address };
}

export type Management = "port" | "internet";

/** Labs with 2 uplinks each, managed over SSH as `how` says; everything is removed afterwards. */
export async function withManagedGateways<T>(how: Management[], fn: (gws: ManagedGateway[], key: ClientKey) => Promise<T>): Promise<T> {
  const scratch = await mkdtemp(join(tmpdir(), "mwt-e2e-"));
  const gws: ManagedGateway[] = [];
  const labs: Lab[] = [];
  try {
    const key = await clientKey(scratch);
    for (const [k, way] of how.entries()) {
      const lab = await createLab({ links: 2 });
      labs.push(lab);
      gws.push(way === "port" ? await managePort(lab, k, key) : await manageOverInternet(lab, key));
    }
    return await fn(gws, key);
  } finally {
    for (const g of gws) await g.sshd.stop().catch(() => {});
    for (const lab of labs) await lab.destroy(); // deleting the namespace deletes its veth pairs
    await rm(scratch, { recursive: true, force: true });
  }
}
