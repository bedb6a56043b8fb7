// Entry point of the provider plugin: provider/pulumi-resource-multiwan runs this with the engine's
// address, as the engine runs any provider executable.
import { main } from "@pulumi/pulumi/provider";
import { multiwanProvider } from "./provider";

main(multiwanProvider, process.argv.slice(2));
