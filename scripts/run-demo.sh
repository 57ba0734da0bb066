#!/usr/bin/env bash
# The README's demo command: installs what is missing, then runs `sluice dev --demo` in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-services.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
node scripts/build.mjs --quiet
exec node bin/sluice.js dev --demo "$@"
