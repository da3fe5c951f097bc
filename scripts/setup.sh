#!/usr/bin/env bash
# Installs what iohub needs, idempotently: the pinned Deno from npm, and
# QEMU 7.2, binutils and gcc from apt where they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(node -p 'require("./package.json").devDependencies.deno')
if ! node_modules/deno/deno --version 2>/dev/null | grep -q "^deno $want " || [ ! -d node_modules/deno-std ]; then
  echo "setup: installing deno $want and deno-std from npm" >&2
  npm ci --no-bin-links --no-audit --no-fund --loglevel=error >&2
fi
# `deno task` runs an npm bin named deno as a JS script instead of itself:
# keep the binary out of node_modules/.bin so tasks resolve `deno` to Deno.
rm -f node_modules/.bin/deno

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v as >/dev/null || missing+=(binutils)
command -v ld >/dev/null || missing+=(binutils)
command -v gcc >/dev/null || missing+=(gcc)
[ -f /usr/include/linux/kvm.h ] || missing+=(linux-libc-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} from apt" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
fi
