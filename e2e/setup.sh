#!/usr/bin/env bash
# Browser end-to-end test prerequisites, idempotent: Debian's chromium (playwright cannot
# download browsers here) and e2e/node_modules from the committed package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian chromium"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    chromium fonts-noto-cjk >/dev/null
fi
/usr/bin/chromium --version 2>/dev/null || true

if ! command -v npm >/dev/null 2>&1; then
  echo "npm is missing (node 20 + npm required)"; exit 1
fi
# npm ci only when node_modules is absent or older than the lock file.
stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] \
  || ! node -e "require.resolve('playwright-core')" >/dev/null 2>&1; then
  echo "npm ci (e2e/)"
  npm ci --no-audit --no-fund --loglevel=error
fi
node -e "console.log('playwright-core', require('playwright-core/package.json').version)"
