#!/usr/bin/env bash
# The README's test command: set up, then fmt check, lint, type check and
# every test (deno task test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node_modules/deno/deno task test
