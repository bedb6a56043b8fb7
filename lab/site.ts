// A lab gateway as multiwan config: every lab link (SNAT to its address, probes to the internet's
// probe address), the lab's LAN, and its scratch root as the install prefix. On a dual-stack lab,
// `ipv6` adds the IPv6 side: the LAN's IPv6 networks, each link's next hop, address, delegated
// prefix and translation, and IPv6 probes.
import type { Lab, LinkInfo } from "./lab";
import type { ManagedGateway } from "./managed";

export type Nat6 = "npt" | "masquerade" | "none";

export interface LabGateway6 {
  /** Per link, or one for all. Default "masquerade". "none" needs a lab built with `ipv6: { lanFrom: [link] }`. */
  nat6?: Nat6 | readonly Nat6[];
  /** "link-local": the ISP router's fe80:: address as gateway6 (per link, or one for all). Default "global". */
  nextHop?: "global" | "link-local" | readonly ("global" | "link-local")[];
  /** Give address6 (with its prefix length). false: omitted (masquerade then MASQUERADEs). Default true. */
  address6?: boolean;
}

const pick = <T>(v: T | readonly T[] | undefined, i: number, fallback: T): T =>
  (Array.isArray(v) ? (v as readonly T[])[i] : (v as T | undefined)) ?? fallback;

function link6(lab: Lab, l: LinkInfo, i: number, o: LabGateway6) {
  const nat6 = pick(o.nat6, i, "masquerade");
  if (nat6 === "none" && !lab.lanInfo.provider6?.some((p) => p.link === l.name)) {
    throw new Error(`nat6 "none" on ${l.name} needs the LAN numbered from its prefix: build the lab with ipv6: { lanFrom: ["${l.name}"] }`);
  }
  return {
    gateway6: pick(o.nextHop, i, "global") === "link-local" ? l.gateway6LinkLocal! : l.gateway6!,
    ...(o.address6 === false ? {} : { address6: `${l.address6}/${l.prefixLength6}` }),
    // Masquerading translates to the link's address: the config takes no prefix6 with it.
    ...(nat6 === "masquerade" ? {} : { prefix6: l.prefix6! }),
    nat6,
  };
}

export function labGateway(lab: Lab, name: string, connection: Record<string, unknown>, weights?: number[], ipv6?: LabGateway6) {
  if (ipv6 && !lab.ipv6) throw new Error("an IPv6 gateway config needs a dual-stack lab (LabOptions.ipv6)");
  const lan6 = ipv6 ? { networks6: [lab.lanInfo.network6!, ...lab.lanInfo.provider6!.map((p) => p.network)] } : {};
  return {
    name,
    connection,
    root: lab.root,
    lan: { interfaces: [lab.lanInfo.interface], networks: [lab.lanInfo.network], ...lan6 },
    links: lab.links.map((l, i) => ({
      name: l.name,
      interface: l.interface,
      gateway: l.gateway,
      address: `${l.address}/${l.prefixLength}`,
      ...(ipv6 ? link6(lab, l, i, ipv6) : {}),
      weight: weights?.[i] ?? 1,
      check: { targets: [lab.serverAddresses.probe], ...(ipv6 ? { targets6: [lab.serverAddresses6.probe] } : {}) },
    })),
  };
}

/** A gateway reached over its real sshd, host key pinned; `connection` adds e.g. rollbackAfter; `ipv6`: dual stack. */
export function managedGateway(g: ManagedGateway, name: string, weights: number[], connection: Record<string, unknown> = {}, ipv6?: LabGateway6) {
  return labGateway(g.lab, name, { host: g.address, hostKey: g.sshd.hostKey, ...connection }, weights, ipv6);
}
