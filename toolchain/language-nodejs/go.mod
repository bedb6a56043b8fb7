// Wrapper module for the pulumi-language-nodejs plugin; built by scripts/pulumi-toolchain.sh.
// The language host module has no tags: the script resolves its v3.248.0 release commit with
// `go get -tool github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3@dc7edd58bc13`,
// which records the pseudo-version here and in go.sum (commit both once resolved).
// pkg/v3 and sdk/v3 are pinned to the CLI's tag; the clipboard fork replace is copied from
// pkg/v3's go.mod because replace directives of dependencies are ignored.
module multiwan.local/toolchain/language-nodejs

go 1.25.11

require (
	github.com/pulumi/pulumi/pkg/v3 v3.248.0
	github.com/pulumi/pulumi/sdk/v3 v3.248.0
)

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
