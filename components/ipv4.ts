// IPv4 arithmetic for the cross-field checks (zod validates the syntax first).

export function parseIpv4(address: string): number {
  return address.split(".").reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

export interface Subnet {
  network: number;
  broadcast: number;
  prefix: number;
}

/** `198.51.100.0/24` (or `203.0.113.2/30`: host bits are masked off) → numeric bounds. */
export function parseCidr(cidr: string): Subnet {
  const [addr, len] = cidr.split("/");
  const prefix = len === undefined ? 32 : Number(len);
  const size = 2 ** (32 - prefix);
  const network = Math.floor(parseIpv4(addr) / size) * size;
  return { network, broadcast: network + size - 1, prefix };
}

export function inSubnet(address: number, subnet: Subnet): boolean {
  return address >= subnet.network && address <= subnet.broadcast;
}
