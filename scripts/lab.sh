#!/usr/bin/env bash
# The main job in one command (as root): install what is missing, then build and measure the
# built-in lab (`scripts/lab.sh down` removes it). The lab has its own entry point, lab/main.ts:
# the shipped `multiwan` CLI does not carry it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh >&2
exec node --require tsx/cjs lab/main.ts "$@"
