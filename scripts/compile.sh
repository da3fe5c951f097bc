#!/usr/bin/env bash
# `deno task compile`: builds the guests a compiled iohub runs, then compiles
# main.ts into one binary (default build/iohub) carrying them, with the
# permissions bin/iohub grants. Where Deno cannot download its denort
# runtime, or the binary built does not run iohub, says so in one line and
# exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/iohub}
deno=node_modules/deno/deno
source scripts/permissions.sh

guests=$("$deno" run --quiet --no-prompt --allow-ffi --allow-read \
  --allow-write=build --allow-run=as,ld scripts/prebuild_guests.ts)
includes=()
for path in $guests; do includes+=(--include "$path"); done

if [ -n "${DENORT_BIN:-}" ] && [ ! -f "$DENORT_BIN" ]; then
  echo "compile: DENORT_BIN=$DENORT_BIN: no such file (it must name a denort runtime)" >&2
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$deno" compile --quiet --no-prompt "${includes[@]}" \
  "${IOHUB_PERMISSIONS[@]}" --output "$out" main.ts 2>"$log"; then
  if grep -q "denort" "$log"; then
    version=$("$deno" --version | head -n 1 | cut -d' ' -f2)
    echo "compile: deno compile could not download its denort runtime (no access to dl.deno.land); set DENORT_BIN to a denort $version binary for this platform and run again" >&2
  else
    cat "$log" >&2
  fi
  exit 1
fi
# A DENORT_BIN that is not a denort (e.g. the full deno) builds a file that
# ignores the program: only a binary that answers as iohub counts.
if ! "$out" --version </dev/null 2>/dev/null | grep -q "^iohub "; then
  rm -f "$out"
  echo "compile: the binary built does not run iohub: DENORT_BIN=${DENORT_BIN:-} must be a denort runtime, not deno itself" >&2
  exit 1
fi
echo "compile: wrote $out ($("$out" --version))"
