// The component's wiring, with Pulumi's mocks: names, parents, secrets, outputs. (What the push
// does on a real gateway is tested end to end in test/e2e with the real engine.)
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { Gateway } from "../../components/gateway";
import { planGateway } from "../../components/plan";
import { bundleFingerprint, renderBundle } from "../../components/render";
import { multiwanProvider } from "../../components/provider";
import { gateway, validSite } from "./fixtures";
import { created } from "./mocks";


const unwrap = <T>(o: pulumi.Output<T>) => new Promise<T>((resolve) => o.apply(resolve));
const isSecret = (o: pulumi.Output<unknown>) => (o as unknown as { isSecret: Promise<boolean> }).isSecret;

describe("Gateway component", () => {
  const config = gateway();
  const gw = new Gateway("site-gw1", { config, privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n" });

  it("has the component type token", () => {
    expect((gw as unknown as { __pulumiType: string }).__pulumiType).toBe("multiwan:index:Gateway");
  });

  it("pushes the rendered bundle through one child named after it (its parent is checked in test/e2e)", async () => {
    await unwrap(gw.applied);
    const push = created.find((r) => r.name === "site-gw1-push")!;
    expect(push).toBeDefined();
    expect(push.type).toBe("pulumi-nodejs:dynamic:Resource");
    expect(push.inputs.files).toEqual(renderBundle(planGateway(config)));
    expect(push.inputs.files["iptables.rules"]).toContain("-A MWAN-POST -s 198.18.1.0/24 -o wan1 -j SNAT --to-source 203.0.113.2");
    expect(push.inputs.target).toEqual({ host: "192.0.2.50", port: 22, user: "root", hostKey: config.connection.hostKey });
    expect(push.inputs.installDir).toBe("/etc/multiwan");
    expect(push.inputs.rollbackAfter).toBe(60);
  });

  it("passes the private key only as a secret, and nowhere else", () => {
    const push = created.find((r) => r.name === "site-gw1-push")!;
    const SECRET_SIG = "4dabf18193072939515e22adb298388d"; // Pulumi's marker of a secret value
    expect(push.inputs.privateKey[SECRET_SIG]).toBe("1b47061264138c4ac30d75fd1eb44270");
    const { privateKey: _key, ...rest } = push.inputs;
    expect(JSON.stringify(rest)).not.toContain("not-a-real-key");
  });

  it("outputs the fingerprint, each link's mark and table, and the apply report", async () => {
    expect(await unwrap(gw.fingerprint)).toBe(bundleFingerprint(renderBundle(planGateway(config))));
    expect(await unwrap(gw.links)).toEqual({ isp1: { mark: "0x100/0xff00", table: 101 }, isp2: { mark: "0x200/0xff00", table: 102 } });
    expect(await unwrap(gw.applied)).toBe("applied (mock)");
    expect(await isSecret(gw.fingerprint)).toBe(false);
  });

  it("validates its own config: a hand-built bad value fails naming the field, and nothing is registered", () => {
    const raw = validSite().gateways[0];
    raw.lan.interfaces = ["lan 0"];
    const before = created.length;
    expect(() => new Gateway("site-bad", { config: raw, privateKey: "k" })).toThrow(pulumi.ResourceError);
    expect(() => new Gateway("site-bad2", { config: raw, privateKey: "k" })).toThrow(/site-bad2: invalid multiwan config \(1 problem\):\n  config\.lan\.interfaces\[0\]: must be a Linux interface name/);
    expect(created.filter((r) => r.name.startsWith("site-bad")).length).toBe(0);
    expect(created.length).toBe(before);
  });

  it("takes raw config with defaults to fill, and connection values from other resources", async () => {
    const raw = validSite().gateways[0];
    const g = new Gateway("site-gw3", { config: { ...raw, connection: { ...raw.connection, host: pulumi.output("198.51.100.77") } }, privateKey: "k" });
    await unwrap(g.applied);
    const push = created.find((r) => r.name === "site-gw3-push")!;
    expect(push.inputs.target).toEqual({ host: "198.51.100.77", port: 22, user: "root", hostKey: raw.connection.hostKey });
    expect(push.inputs.files).toEqual(renderBundle(planGateway(config)));
  });

  it("checks known connection values now, even while another one is still unknown", () => {
    const raw = validSite().gateways[0];
    const config = { ...raw, connection: { ...raw.connection, host: pulumi.output("198.51.100.77"), port: 0 } };
    expect(() => new Gateway("site-bad3", { config, privateKey: "k" })).toThrow(/config\.connection\.port: Too small/);
    expect(() => new Gateway("site-bad4", { config: pulumi.output(raw) as never, privateKey: "k" })).toThrow(/config must be a plain object/);
  });

  it("is served to other languages with the push as the provider's own resource", async () => {
    const raw = validSite().gateways[0];
    const { urn } = await multiwanProvider.construct!("site-gw5", "multiwan:index:Gateway", { config: raw, privateKey: "k" }, {});
    expect(await unwrap(pulumi.output(urn))).toContain("multiwan:index:Gateway::site-gw5");
    await new Promise((r) => setTimeout(r, 50));
    expect(created.find((r) => r.name === "site-gw5-push")!.type).toBe("multiwan:index:Push");
    expect(JSON.parse(multiwanProvider.schema!).resources["multiwan:index:Gateway"].isComponent).toBe(true);
    await expect(multiwanProvider.create!("urn:pulumi:s::p::other:index:Thing::x", {})).rejects.toThrow(/unknown resource type other:index:Thing/);
  });

  it("skips the host key only when the config says so", async () => {
    const insecure = gateway((s) => {
      delete s.gateways[0].connection.hostKey;
      s.gateways[0].connection.insecureSkipHostKeyCheck = true;
    });
    const g = new Gateway("site-gw2", { config: insecure, privateKey: "k" });
    await unwrap(g.applied);
    expect(created.find((r) => r.name === "site-gw2-push")!.inputs.target.hostKey).toBeUndefined();
  });
});
