// The ready program's SSH secrets, with Pulumi's mocks: the private key is required unless the
// gateways use the ssh-agent, and a passphrase reaches the push only as a secret.
import * as pulumi from "@pulumi/pulumi";
import { beforeEach, describe, expect, it } from "vitest";
import { siteProgram } from "../../components/program";
import { validSite } from "./fixtures";
import { created } from "./mocks";


const SECRET_SIG = "4dabf18193072939515e22adb298388d"; // Pulumi's marker of a secret value
const settle = () => new Promise((r) => setTimeout(r, 50));

function configure(edit: (site: any) => void, secrets: Record<string, string>) {
  const site = validSite();
  edit(site);
  pulumi.runtime.setAllConfig(
    { "multiwan:site": JSON.stringify(site), ...Object.fromEntries(Object.entries(secrets).map(([k, v]) => [`multiwan:${k}`, v])) },
    Object.keys(secrets).map((k) => `multiwan:${k}`),
  );
}

describe("siteProgram: SSH secrets", () => {
  beforeEach(() => {
    created.length = 0;
  });

  it("needs multiwan:sshPrivateKey, naming the gateways that would use it", () => {
    configure(() => {}, {});
    expect(() => siteProgram()).toThrow(/multiwan:sshPrivateKey: missing; .* or use the ssh-agent \(connection\.agent: true\) on gw1$/);
  });

  it("does without it when the gateways use the ssh-agent", async () => {
    configure((s) => (s.gateways[0].connection.agent = true), {});
    siteProgram();
    await settle();
    const push = created.find((r) => r.name === "gw1-push")!;
    expect(push.inputs.target).toMatchObject({ host: "192.0.2.50", agent: true });
    expect(push.inputs).not.toHaveProperty("privateKey");
    expect(push.inputs).not.toHaveProperty("passphrase");
  });

  it("passes the key's passphrase as a secret", async () => {
    configure(() => {}, { sshPrivateKey: "not-a-real-key", sshPrivateKeyPassphrase: "not-a-real-passphrase" });
    siteProgram();
    await settle();
    const push = created.find((r) => r.name === "gw1-push")!;
    expect(push.inputs.passphrase[SECRET_SIG]).toBeDefined();
    expect(push.inputs.privateKey[SECRET_SIG]).toBeDefined();
    const { privateKey: _k, passphrase: _p, ...rest } = push.inputs;
    expect(JSON.stringify(rest)).not.toContain("not-a-real");
  });
});
