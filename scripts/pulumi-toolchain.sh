#!/usr/bin/env bash
# Puts the Pulumi engine the engine tests run into .tools/pulumi/bin:
#   pulumi                         v3.248.0  (github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
#   pulumi-language-nodejs         v3.248.0  (release commit dc7edd58bc13; the module has no tags)
#   pulumi-language-yaml           v1.25.0   (github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml)
#   pulumi-resource-pulumi-nodejs  3.248.0   (dynamic providers; a script shipped in @pulumi/pulumi)
# Binaries of exactly these versions already in .tools/pulumi/bin or on PATH are reused; the rest
# are built from Go modules (no Pulumi binary can be downloaded here) with the default module and
# build caches, so a second run, or a run from a fresh clone on the same machine, is quick.
# The wrapper modules with the pinned versions are under toolchain/.
# Exit status: 0 when what multiwan needs is in place (pulumi and pulumi-resource-pulumi-nodejs),
# 1 otherwise. The language hosts are tried and reported but optional: the public Go module proxy
# here refuses the nodejs one (403), which only ../shared/goproxy serves, and without it
# test/helpers/engine.ts runs programs through @pulumi/pulumi's own language server
# (test/helpers/engine-host.cjs), as the Automation API does for inline programs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.tools/pulumi/bin
TC=$ROOT/toolchain

PULUMI_VERSION=v3.248.0
LANGHOST_MOD=github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3
LANGHOST_COMMIT=dc7edd58bc13
YAML_MOD=github.com/pulumi/pulumi-yaml
YAML_VERSION=v1.25.0
SDK_VERSION_VAR=github.com/pulumi/pulumi/sdk/v3/go/common/version.Version
YAML_VERSION_VAR=$YAML_MOD/pkg/version.Version

export CGO_ENABLED=0 GOTOOLCHAIN=local
# Where the public proxy refuses the nodejs language host module, a file-based proxy beside the
# checkout (../shared/goproxy) serves exactly the pinned version; other modules come from the usual one.
if [[ -d $ROOT/../shared/goproxy && -z ${MULTIWAN_NO_LOCAL_GOPROXY:-} ]] && command -v go >/dev/null; then
  GOPROXY="file://$(cd "$ROOT/../shared/goproxy" && pwd),$(go env GOPROXY)"
  export GOPROXY
fi
# A missing plugin must be an error, never a download attempt.
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true PULUMI_SKIP_UPDATE_CHECK=true

mkdir -p "$BIN"
missing=()

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
log() { printf '%s\n' "$*" >&2; }

# Go binaries carry their module versions (go version -m): the identity check for plugins, which
# have no --version flag of their own. Prints nothing when go or the build info is unavailable.
buildinfo() { if command -v go >/dev/null; then go version -m "$1" 2>/dev/null || true; fi; }

# is_wanted NAME FILE: FILE is NAME at the pinned version.
is_wanted() {
  local name=$1 f=$2 info
  [[ -x $f ]] || return 1
  case $name in
    pulumi) [[ $("$f" version 2>/dev/null) == "$PULUMI_VERSION" ]] ;;
    pulumi-language-nodejs)
      info=$(buildinfo "$f")
      grep -Eq "^[[:space:]]+(mod|dep)[[:space:]]+${LANGHOST_MOD}[[:space:]]+v3\.[^[:space:]]+-${LANGHOST_COMMIT}" <<<"$info" &&
        grep -Eq "^[[:space:]]+dep[[:space:]]+github.com/pulumi/pulumi/sdk/v3[[:space:]]+${PULUMI_VERSION}[[:space:]]" <<<"$info" ;;
    pulumi-language-yaml)
      info=$(buildinfo "$f")
      grep -Eq "^[[:space:]]+(mod|dep)[[:space:]]+${YAML_MOD}[[:space:]]+${YAML_VERSION}[[:space:]]" <<<"$info" &&
        grep -q -- "-X $YAML_VERSION_VAR=$YAML_VERSION" <<<"$info" ;;
    pulumi-resource-pulumi-nodejs) cmp -s "$f" "$ROOT/node_modules/@pulumi/pulumi/pulumi-resource-pulumi-nodejs" ;;
  esac
}

# reuse NAME: true when .tools already has it, or PATH has it (then linked into .tools).
reuse() {
  local name=$1 found
  if is_wanted "$name" "$BIN/$name"; then
    log "$name: reusing $BIN/$name"
    return 0
  fi
  found=$(PATH=${PATH//"$BIN:"/} command -v "$name" || true)
  if [[ -n $found ]] && is_wanted "$name" "$found"; then
    ln -sf "$found" "$BIN/$name"
    log "$name: reusing $found"
    return 0
  fi
  return 1
}

need_go() {
  command -v go >/dev/null || { log "go is not installed: cannot build $1"; return 1; }
}

# gobuild DIR OUT PKG LDFLAGS: build PKG from the wrapper module DIR; go.mod/go.sum are read-only
# here, so a build never changes a pinned version. No -trimpath: it drops -ldflags from the
# binary's build info, which is_wanted reads.
gobuild() {
  (cd "$1" && nice -n 10 go build -mod=readonly -ldflags "-s -w $4" -o "$2.tmp.$$" "$3") &&
    mv "$2.tmp.$$" "$2"
}

build_pulumi() {
  need_go pulumi || return 1
  gobuild "$TC/pulumi" "$BIN/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
    "-X $SDK_VERSION_VAR=$PULUMI_VERSION"
}

build_langhost() {
  need_go pulumi-language-nodejs || return 1
  # The language host must run on the CLI's own sdk/pkg: refuse a go.mod that raised them.
  local v
  for m in github.com/pulumi/pulumi/sdk/v3 github.com/pulumi/pulumi/pkg/v3; do
    v=$(cd "$TC/language-nodejs" && go list -m -f '{{.Version}}' "$m")
    [[ $v == "$PULUMI_VERSION" ]] || { log "  $m resolved to $v, not $PULUMI_VERSION"; return 1; }
  done
  gobuild "$TC/language-nodejs" "$BIN/pulumi-language-nodejs" "$LANGHOST_MOD" \
    "-X $SDK_VERSION_VAR=$PULUMI_VERSION"
}

# A tagged release: toolchain/language-yaml/go.mod and go.sum pin it and its own dependencies.
build_yaml() {
  need_go pulumi-language-yaml || return 1
  gobuild "$TC/language-yaml" "$BIN/pulumi-language-yaml" "$YAML_MOD/cmd/pulumi-language-yaml" \
    "-X $YAML_VERSION_VAR=$YAML_VERSION"
}

# The dynamic-provider plugin is a shell script in the sdk (sdk/v3/nodejs/dist/ in the Go module,
# the package root on npm); the npm copy of @pulumi/pulumi 3.248.0 is already installed.
build_dynamic() {
  local src=$ROOT/node_modules/@pulumi/pulumi/pulumi-resource-pulumi-nodejs
  grep -q '"version": "3.248.0"' "$ROOT/node_modules/@pulumi/pulumi/package.json" ||
    { log "  node_modules/@pulumi/pulumi is not 3.248.0: run npm ci"; return 1; }
  install -m 0755 "$src" "$BIN/pulumi-resource-pulumi-nodejs"
}

for name in pulumi pulumi-language-nodejs pulumi-language-yaml pulumi-resource-pulumi-nodejs; do
  reuse "$name" && continue
  log "$name: building"
  start=$(now)
  case $name in
    pulumi) fn=build_pulumi ;;
    pulumi-language-nodejs) fn=build_langhost ;;
    pulumi-language-yaml) fn=build_yaml ;;
    pulumi-resource-pulumi-nodejs) fn=build_dynamic ;;
  esac
  if $fn && is_wanted "$name" "$BIN/$name"; then
    log "$name: built in $(took "$start")"
  else
    log "$name: FAILED after $(took "$start")"
    missing+=("$name")
  fi
done

required=(pulumi pulumi-resource-pulumi-nodejs)
for name in "${missing[@]}"; do
  if [[ " ${required[*]} " == *" $name "* ]]; then
    log "missing: ${missing[*]}"
    exit 1
  fi
done
if ((${#missing[@]})); then
  log "not available here (optional): ${missing[*]}"
fi
log "Pulumi engine ready in $BIN"
