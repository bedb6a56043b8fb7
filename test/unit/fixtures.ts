// A valid site config to start from: tests change one thing and check what the schema says.
import { ConfigError, parseSite, type Gateway } from "../../components/config";

export function validSite(): any {
  return {
    gateways: [
      {
        name: "gw1",
        connection: { host: "192.0.2.50", hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIABrfGt9wZ2pFlXNancn1sg8tHkT224ufhuW9vHs4qLQ" },
        lan: { interfaces: ["lan0"], networks: ["198.18.1.0/24"] },
        links: [
          {
            name: "isp1",
            interface: "wan1",
            gateway: "203.0.113.1",
            address: "203.0.113.2/30",
            weight: 3,
            check: { targets: ["192.0.2.1"] },
          },
          { name: "isp2", interface: "wan2", gateway: "198.51.100.5", weight: 1, check: { targets: ["192.0.2.1"] } },
        ],
      },
    ],
  };
}

/** What parseSite says of `validSite()` after `edit`: its problems, none when it is valid. */
export function problemsOf(edit: (site: any) => void): { path: string; message: string }[] {
  const site = validSite();
  edit(site);
  try {
    parseSite(site);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

/** The first gateway of `validSite()` after `edit`, resolved. */
export function gateway(edit: (site: any) => void = () => {}): Gateway {
  const site = validSite();
  edit(site);
  return parseSite(site).gateways[0];
}
