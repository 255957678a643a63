#!/usr/bin/env bash
# Installs `cargo-deny` (crates.io) into the project's tools folder, once. `make lint` uses it.
# Usage: scripts/install-cargo-deny.sh [TOOLS_DIR]   (default: $WASMFLOW_TOOLS or ./.tools)
set -euo pipefail
tools="${1:-${WASMFLOW_TOOLS:-$(cd "$(dirname "$0")/.." && pwd)/.tools}}"
if [ -x "$tools/bin/cargo-deny" ]; then
    echo "cargo-deny: $tools/bin/cargo-deny"
    exit 0
fi
echo "installing cargo-deny into $tools (a few minutes on 2 cores, once)"
cargo install cargo-deny --locked --version 0.20.2 --root "$tools"
