#!/usr/bin/env bash
# The main job in one command (as root): install what is missing, then `multiwan lab` (or
# `scripts/lab.sh down` to remove the lab).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh >&2
exec node bin/multiwan.js lab "$@"
