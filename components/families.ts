// The two address families a gateway may route: each has its own netfilter tables, policy rules and
// routes on the kernel side, so its own bundle files and tools. Marks, tables, priorities and the
// balancing decision are shared (one conntrack mark per connection, whatever its family).

export type Family = 4 | 6;

export interface FamilyFiles {
  family: Family;
  /** Bundle files: iptables-restore input, its hook jumps, `ip` lines and their undo. */
  rulesFile: string;
  hooksFile: string;
  batchFile: string;
  undoFile: string;
  /** The balancing variants are `variants/<key><variantSuffix>`. */
  variantSuffix: string;
  save: string;
  restore: string;
  /** `ip -4` / `ip -6`: a batch line alone does not say its family (`rule add fwmark …` is IPv4). */
  ipFlag: string;
}

export const FAMILIES: Record<Family, FamilyFiles> = {
  4: { family: 4, rulesFile: "iptables.rules", hooksFile: "iptables.hooks", batchFile: "ip.batch", undoFile: "ip.undo", variantSuffix: ".rules", save: "iptables-save", restore: "iptables-restore", ipFlag: "-4" },
  6: { family: 6, rulesFile: "ip6tables.rules", hooksFile: "ip6tables.hooks", batchFile: "ip6.batch", undoFile: "ip6.undo", variantSuffix: ".rules6", save: "ip6tables-save", restore: "ip6tables-restore", ipFlag: "-6" },
};
