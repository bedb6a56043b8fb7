// Undo is exact: remove (and the rollback of a first apply) puts back the sysctl values the gateway
// had before multiwan first set them, and deletes only the policy rules multiwan added, not a host's
// own rule that happens to be identical to one of ours.
import { expect, it } from "vitest";
import { deploy, gatewayState, labSite, renderLabBundle, runApply } from "../../lab/deploy";
import { withLab, type Lab } from "../../lab/lab";
import { describeAsRoot } from "../helpers/root";

const SYSCTLS = ["net.ipv4.ip_forward", "net.ipv4.conf.all.src_valid_mark"];
const sysctls = async (lab: Lab) => (await lab.sh(lab.ns.gw, `sysctl ${SYSCTLS.join(" ")}`, { check: true })).stdout;

describeAsRoot("undo", () => {
  it("remove and a rolled-back first apply leave the sysctls as they were and the host's own identical rule in place", async () => {
    await withLab({ links: 2 }, async (lab) => {
      // The host before multiwan: forwarding off, and its own copy of our suppress rule.
      await lab.sh(lab.ns.gw, `sysctl -qw ${SYSCTLS.map((k) => `${k}=0`).join(" ")} && ip rule add pref 1000 lookup main suppress_prefixlength 0`, { check: true });
      const pristine = { state: await gatewayState(lab), sysctls: await sysctls(lab) };
      expect(pristine.state.rules).toContain("1000:\tfrom all lookup main suppress_prefixlength 0");
      expect(pristine.sysctls).toBe("net.ipv4.ip_forward = 0\nnet.ipv4.conf.all.src_valid_mark = 0\n");

      // A first apply that fails after its rules went live is rolled back to exactly this.
      const broken = labSite(lab);
      broken.gateways[0].links[1].gateway = "192.0.2.99"; // a next hop the kernel cannot reach
      delete (broken.gateways[0].links[1] as { address?: string }).address;
      expect((await runApply(lab, renderLabBundle(broken))).stderr).toContain("apply failed; the previous state was restored");
      expect({ state: await gatewayState(lab), sysctls: await sysctls(lab) }).toEqual(pristine);

      // Two applies (the second must not record the first one's values), then remove.
      await deploy(lab, labSite(lab, { weights: [3, 1] }));
      expect(await sysctls(lab)).toBe("net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.src_valid_mark = 1\n");
      const bundle = await deploy(lab, labSite(lab, { weights: [1, 1] }));
      expect((await runApply(lab, bundle, "remove")).code).toBe(0);
      expect({ state: await gatewayState(lab), sysctls: await sysctls(lab) }).toEqual(pristine);
      expect((await lab.exec(lab.ns.gw, ["find", lab.root, "-type", "f"])).stdout).toBe("");
    });
  });
});
