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
# Its release profile asks for fat LTO in one codegen unit: minutes of CI for a linter that
# runs for seconds. Plain optimised code builds in about half the time.
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install cargo-deny --locked --version 0.20.2 --root "$tools"
