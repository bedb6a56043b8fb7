// A network namespace joined to the host's root namespace by a veth pair, so that processes in the
// root namespace (the Pulumi engine, its providers) reach a server inside it. Only namespaces this
// helper creates are touched; names must start with "mwt-eng-" and addresses stay in the
// documentation/benchmark ranges.
import { run } from "./exec";

export interface VethNamespace {
  name: string;
  /** Interface name on the host side (root namespace). */
  hostIf: string;
  /** Address of the namespace's end, without prefix length (e.g. 198.18.200.2). */
  nsAddress: string;
  hostAddress: string;
  remove(): Promise<void>;
}

const ALLOWED = [/^198\.1[89]\./, /^192\.0\.2\./, /^198\.51\.100\./, /^203\.0\.113\./];

function checkAddr(cidr: string): string {
  const ip = cidr.split("/")[0];
  if (!ALLOWED.some((r) => r.test(ip))) throw new Error(`address ${cidr} is outside the test ranges`);
  return ip;
}

const ip = (args: string[]) => run(["ip", ...args], { check: true });

export async function createVethNamespace(opts: {
  name: string;
  hostCidr?: string;
  nsCidr?: string;
}): Promise<VethNamespace> {
  const { name, hostCidr = "198.18.200.1/30", nsCidr = "198.18.200.2/30" } = opts;
  if (!/^mwt-eng-[a-z0-9-]{1,40}$/.test(name)) throw new Error(`namespace name ${name} must start with mwt-eng-`);
  const hostAddress = checkAddr(hostCidr);
  const nsAddress = checkAddr(nsCidr);
  // Interface names are limited to 15 characters: derive a short unique one.
  const hostIf = `mwte${(process.pid % 100000).toString(36)}${Math.floor(Math.random() * 36 ** 3).toString(36)}`;
  const ns: VethNamespace = {
    name,
    hostIf,
    nsAddress,
    hostAddress,
    async remove() {
      // Deleting the namespace destroys its veth end and with it the host end; unchecked, since
      // either may already be gone.
      await run(["ip", "netns", "del", name]);
      await run(["ip", "link", "del", hostIf]);
    },
  };
  try {
    await ip(["netns", "add", name]);
    await ip(["link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", name]);
    await ip(["addr", "add", hostCidr, "dev", hostIf]);
    await ip(["link", "set", hostIf, "up"]);
    await ip(["-n", name, "addr", "add", nsCidr, "dev", "eth0"]);
    await ip(["-n", name, "link", "set", "eth0", "up"]);
    await ip(["-n", name, "link", "set", "lo", "up"]);
  } catch (e) {
    await ns.remove();
    throw e;
  }
  return ns;
}
