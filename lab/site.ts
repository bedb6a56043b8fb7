// A lab gateway as multiwan config: every lab link (SNAT to its address, probes to the internet's
// probe address), the lab's LAN, and its scratch root as the install prefix.
import type { Lab } from "./lab";
import type { ManagedGateway } from "./managed";

export function labGateway(lab: Lab, name: string, connection: Record<string, unknown>, weights?: number[]) {
  return {
    name,
    connection,
    root: lab.root,
    lan: { interfaces: [lab.lanInfo.interface], networks: [lab.lanInfo.network] },
    links: lab.links.map((l, i) => ({
      name: l.name,
      interface: l.interface,
      gateway: l.gateway,
      address: `${l.address}/${l.prefixLength}`,
      weight: weights?.[i] ?? 1,
      check: { targets: [lab.serverAddresses.probe] },
    })),
  };
}

/** A gateway reached over its real sshd, host key pinned; `connection` adds e.g. rollbackAfter. */
export function managedGateway(g: ManagedGateway, name: string, weights: number[], connection: Record<string, unknown> = {}) {
  return labGateway(g.lab, name, { host: g.address, hostKey: g.sshd.hostKey, ...connection }, weights);
}
