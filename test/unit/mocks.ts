// Pulumi's mocks for the component's wiring tests: every registered resource is recorded, and each
// returns its inputs as its state. Import this before the first resource is constructed.
import * as pulumi from "@pulumi/pulumi";

export const created: pulumi.runtime.MockResourceArgs[] = [];

pulumi.runtime.setMocks(
  {
    newResource: (args) => {
      created.push(args);
      return { id: `${args.name}-id`, state: { ...args.inputs, applied: "applied (mock)" } };
    },
    call: (args) => args.inputs,
  },
  "multiwan",
  "test",
  false,
);
