#!/usr/bin/env bash
# Makes `npx tapnet` work from the repository root: npm links the bins of
# dependencies into node_modules/.bin, never the root package's own, so do it here.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f dist/cli/main.js ] || { echo "link-bin: dist/cli/main.js missing (npm run build)" >&2; exit 1; }
chmod +x dist/cli/main.js
mkdir -p node_modules/.bin
ln -sfn ../../dist/cli/main.js node_modules/.bin/tapnet
