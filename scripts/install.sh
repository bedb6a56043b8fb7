#!/usr/bin/env bash
# Everything multiwan needs on this machine, installed if missing: Debian packages, npm packages,
# the Go-built Pulumi toolchain. Used by scripts/lab.sh and .ci/run; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

packages=(iptables iproute2 conntrack iputils-ping openssh-server openssh-client shellcheck systemd util-linux mawk sudo prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install: packages ready after $((SECONDS - started)) s"

# `npm ci` again only when package-lock.json changed since the last one here.
stamp=node_modules/.multiwan-lock.sha256
if ! sha256sum --check --status "$stamp" 2>/dev/null; then
  npm ci --no-audit --no-fund
  sha256sum package-lock.json >"$stamp"
fi
echo "install: npm packages ready after $((SECONDS - started)) s"

bash scripts/pulumi-toolchain.sh
echo "install: Pulumi toolchain ready after $((SECONDS - started)) s"
