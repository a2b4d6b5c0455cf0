#!/usr/bin/env bash
# What the test command needs besides the Rust toolchain, installed when missing:
# - PostgreSQL's server binaries (Debian's `postgresql`): the tests start throwaway clusters
#   with initdb/pg_ctl themselves (testkit/src/postgres.rs), nothing uses a system service;
# - curl and jq, which the quick start's printed commands use; Prometheus Alertmanager
#   (Debian's `prometheus-alertmanager`, only its binary: the test starts its own);
# - Python's venv module and npm, then the pinned deploy validators
#   (tests/deploy-validate/install.sh, from PyPI and npm).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
command -v npm >/dev/null || missing+=(npm)
# The quick start's printed commands (tests/e2e/quickstart.rs runs them) use curl and jq.
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
# The alert-intake test (tests/e2e/intake.rs) starts a real Alertmanager on free ports.
[ -x /usr/bin/prometheus-alertmanager ] || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
bash "$here/deploy-validate/install.sh"
