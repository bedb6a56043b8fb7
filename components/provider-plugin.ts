// Entry point of the provider plugin (PulumiPlugin.yaml): the engine starts it with its address.
import { main } from "@pulumi/pulumi/provider";
import { multiwanProvider } from "./provider";

main(multiwanProvider, process.argv.slice(2));
