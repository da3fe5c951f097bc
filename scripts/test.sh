#!/usr/bin/env bash
# The README's test command: set up, then fmt check, lint, type check and
# every test (deno task test), ending with a plain "N passed, N failed" line
# that CI can read (Deno's own summary line is not in that form).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
node_modules/deno/deno task test 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -n 1 || true)
if [ -n "$summary" ]; then
  passed=$(sed -E 's/.*\| ([0-9]+) passed.*/\1/' <<<"$summary")
  failed=$(sed -E 's/.*\| ([0-9]+) failed.*/\1/' <<<"$summary")
  ignored=$(sed -nE 's/.*\| ([0-9]+) ignored.*/\1/p' <<<"$summary")
  echo "tests: ${passed} passed, ${failed} failed, ${ignored:-0} skipped"
fi
exit "$status"
