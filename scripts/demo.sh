#!/usr/bin/env bash
# The README's demo command: set up, then run the live demo (bin/iohub demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec bin/iohub demo
