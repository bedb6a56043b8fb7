// Wrapper module for the pulumi-resource-command provider v1.2.1; built by
// scripts/pulumi-toolchain.sh. Its own module, so the provider's pinned pulumi versions are not
// raised to the CLI's. The provider module has no tag of its own: the script resolves the v1.2.1
// release commit with `go get -tool github.com/pulumi/pulumi-command/provider/cmd/pulumi-resource-command@7f3eb6f3b77c`,
// which records the pseudo-version here and in go.sum (commit both once resolved).
module multiwan.local/toolchain/command

go 1.25.11
