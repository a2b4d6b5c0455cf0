#!/usr/bin/env bash
# Installs the validators tests/e2e/deploy.rs runs against deploy/, from PyPI and npm only,
# into target/deploy-validate/ (or $EDGE_DEPLOY_TOOLS): a Python venv and an npm tree.
# Idempotent: a second run with unchanged pins only checks the stamp files.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dest="${EDGE_DEPLOY_TOOLS:-$repo/target/deploy-validate}"
mkdir -p "$dest"

stamp_ok() { [ -f "$dest/$1.stamp" ] && cmp -s "$2" "$dest/$1.stamp"; }

if ! stamp_ok venv "$here/requirements.txt"; then
  rm -rf "$dest/venv"
  python3 -m venv "$dest/venv"
  "$dest/venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$dest/venv.stamp"
fi

if ! stamp_ok npm "$here/package-lock.json"; then
  rm -rf "$dest/npm"
  mkdir -p "$dest/npm"
  cp "$here/package.json" "$here/package-lock.json" "$dest/npm/"
  (cd "$dest/npm" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$here/package-lock.json" "$dest/npm.stamp"
fi
echo "deploy validators in $dest"
