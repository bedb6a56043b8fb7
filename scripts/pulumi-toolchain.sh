#!/usr/bin/env bash
# Puts the Pulumi engine the engine tests run into .tools/pulumi/bin:
#   pulumi                         v3.248.0  (github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
#   pulumi-language-nodejs         v3.248.0  (release commit dc7edd58bc13; the module has no tags)
#   pulumi-resource-command        1.2.1     (release commit 7f3eb6f3b77c of pulumi-command)
#   pulumi-resource-pulumi-nodejs  3.248.0   (dynamic providers; a script shipped in @pulumi/pulumi)
# Binaries of exactly these versions already in .tools/pulumi/bin or on PATH are reused; the rest
# are built from Go modules (no Pulumi binary can be downloaded here) with the default module and
# build caches, so a second run, or a run from a fresh clone on the same machine, is quick.
# The wrapper modules with the pinned versions are under toolchain/.
# Exit status: 0 when what multiwan needs is in place (pulumi and pulumi-resource-pulumi-nodejs),
# 1 otherwise. This machine's Go module proxy refuses the language host and pulumi-command
# modules (403 "This module version is not available"): those two are tried and reported, and
# without the language host test/helpers/engine.ts runs programs through @pulumi/pulumi's own
# language server (test/helpers/engine-host.cjs), as the Automation API does for inline programs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.tools/pulumi/bin
TC=$ROOT/toolchain

PULUMI_VERSION=v3.248.0
LANGHOST_MOD=github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3
LANGHOST_COMMIT=dc7edd58bc13
COMMAND_MOD=github.com/pulumi/pulumi-command/provider
COMMAND_PKG=$COMMAND_MOD/cmd/pulumi-resource-command
COMMAND_COMMIT=7f3eb6f3b77c
COMMAND_VERSION=1.2.1
SDK_VERSION_VAR=github.com/pulumi/pulumi/sdk/v3/go/common/version.Version
COMMAND_VERSION_VAR=github.com/pulumi/pulumi-command/provider/pkg/version.Version

export CGO_ENABLED=0 GOTOOLCHAIN=local
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
    pulumi-resource-command)
      info=$(buildinfo "$f")
      grep -Eq "^[[:space:]]+(mod|dep)[[:space:]]+${COMMAND_MOD}[[:space:]]+v[^[:space:]]+-${COMMAND_COMMIT}" <<<"$info" &&
        grep -q -- "-X $COMMAND_VERSION_VAR=$COMMAND_VERSION" <<<"$info" ;;
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
  (cd "$1" && nice -n 10 go build -mod=readonly -ldflags "-s -w $4" -o "$2.tmp" "$3") &&
    mv "$2.tmp" "$2"
}

# resolve DIR MODULE COMMIT PKG: first run only, record the untagged module's pseudo-version in the
# wrapper's go.mod/go.sum and PKG as its tool. The module is fetched by its own path: with
# PKG@COMMIT, go stops at the proxy's 403 for the longer path instead of trying the module's.
# The checksum database behind this proxy has no entries for these recent releases (404), so
# go.sum, checked in once resolved, is what pins the hashes.
resolve() {
  local dir=$1 mod=$2 commit=$3 pkg=$4
  grep -q "^tool $pkg\$" "$dir/go.mod" && return 0
  log "  resolving $mod@$commit (first run: commit the changed ${dir#"$ROOT/"}/go.mod and go.sum)"
  (cd "$dir" && GOSUMDB=off nice -n 10 go get "$mod@$commit" && GOSUMDB=off go get -tool "$pkg")
}

build_pulumi() {
  need_go pulumi || return 1
  gobuild "$TC/pulumi" "$BIN/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
    "-X $SDK_VERSION_VAR=$PULUMI_VERSION"
}

build_langhost() {
  need_go pulumi-language-nodejs || return 1
  resolve "$TC/language-nodejs" "$LANGHOST_MOD" "$LANGHOST_COMMIT" "$LANGHOST_MOD" || return 1
  # The language host must run on the CLI's own sdk/pkg: refuse a resolution that raised them.
  local v
  for m in github.com/pulumi/pulumi/sdk/v3 github.com/pulumi/pulumi/pkg/v3; do
    v=$(cd "$TC/language-nodejs" && go list -m -f '{{.Version}}' "$m")
    [[ $v == "$PULUMI_VERSION" ]] || { log "  $m resolved to $v, not $PULUMI_VERSION"; return 1; }
  done
  gobuild "$TC/language-nodejs" "$BIN/pulumi-language-nodejs" "$LANGHOST_MOD" \
    "-X $SDK_VERSION_VAR=$PULUMI_VERSION"
}

build_command() {
  need_go pulumi-resource-command || return 1
  resolve "$TC/command" "$COMMAND_MOD" "$COMMAND_COMMIT" "$COMMAND_PKG" || return 1
  gobuild "$TC/command" "$BIN/pulumi-resource-command" "$COMMAND_PKG" \
    "-X $COMMAND_VERSION_VAR=$COMMAND_VERSION"
}

# The dynamic-provider plugin is a shell script in the sdk (sdk/v3/nodejs/dist/ in the Go module,
# the package root on npm); the npm copy of @pulumi/pulumi 3.248.0 is already installed.
build_dynamic() {
  local src=$ROOT/node_modules/@pulumi/pulumi/pulumi-resource-pulumi-nodejs
  grep -q '"version": "3.248.0"' "$ROOT/node_modules/@pulumi/pulumi/package.json" ||
    { log "  node_modules/@pulumi/pulumi is not 3.248.0: run npm ci"; return 1; }
  install -m 0755 "$src" "$BIN/pulumi-resource-pulumi-nodejs"
}

for name in pulumi pulumi-language-nodejs pulumi-resource-command pulumi-resource-pulumi-nodejs; do
  reuse "$name" && continue
  log "$name: building"
  start=$(now)
  case $name in
    pulumi) fn=build_pulumi ;;
    pulumi-language-nodejs) fn=build_langhost ;;
    pulumi-resource-command) fn=build_command ;;
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
