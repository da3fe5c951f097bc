#!/usr/bin/env bash
# The README's demo command: set up, then run the live demo (deno task demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node_modules/deno/deno task demo
