#!/bin/sh
# Installs the e2e peer's own dependencies with `npm ci` into a cache outside the clone, keyed by
# the lockfile's hash, and links test/peer/node_modules to it: a fresh clone on the same machine
# (CI runs on one) reuses the install instead of compiling better-sqlite3 again (80 s to 3.5 min).
# A no-op when the link (or an earlier in-tree install) already matches the lockfile.
# Cache: $ATRELAY_PEER_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/atrelay/test-peer.
# Usage (from anywhere): test/peer/install.sh
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
installed() { [ -d "$1/@atproto/dev-env" ] && [ -f "$1/.atrelay-lock.sha256" ] && [ "$(cat "$1/.atrelay-lock.sha256")" = "$want" ]; }

if installed "$dir/node_modules"; then
  echo "test/peer: dependencies up to date"
  exit 0
fi

cache_root=${ATRELAY_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/atrelay/test-peer}
cache="$cache_root/$want"
if installed "$cache/node_modules"; then
  echo "test/peer: using the cached install in $cache"
else
  echo "test/peer: npm ci into $cache (lockfile $want)"
  building="$cache.building.$$"
  rm -rf "$building"
  mkdir -p "$building"
  cp "$dir/package.json" "$dir/package-lock.json" "$building/"
  npm ci --prefix "$building" --no-audit --no-fund
  # Fail here, not later in the e2e test, if the native module did not build.
  (cd "$building" && node -e "require('better-sqlite3')(':memory:').close()")
  echo "$want" > "$building/node_modules/.atrelay-lock.sha256"
  rm -rf "$cache"
  mv "$building" "$cache"
fi
# An out-of-date in-tree install (or link) is replaced by a link to the cache.
rm -rf "$dir/node_modules"
ln -s "$cache/node_modules" "$dir/node_modules"
echo "test/peer: installed"
