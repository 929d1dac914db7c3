#!/bin/sh
# Installs the e2e peer's own dependencies (test/peer/node_modules) with `npm ci`, but only
# when node_modules is missing or package-lock.json changed since the last install.
# About 80-100 s on 2 cores (better-sqlite3 compiles from source; nodedir=/usr in ~/.npmrc).
# Usage (from anywhere): test/peer/install.sh
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
stamp="$dir/node_modules/.atrelay-lock.sha256"
want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
if [ -d "$dir/node_modules/@atproto/dev-env" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "test/peer: dependencies up to date"
  exit 0
fi
echo "test/peer: npm ci (lockfile $want)"
npm ci --prefix "$dir" --no-audit --no-fund
# Fail here, not later in the e2e test, if the native module did not build.
(cd "$dir" && node -e "require('better-sqlite3')(':memory:').close()")
echo "$want" > "$stamp"
echo "test/peer: installed"
