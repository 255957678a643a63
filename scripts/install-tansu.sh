#!/usr/bin/env bash
# Installs the Kafka-compatible broker `tansu` (crates.io) into the project's tools folder, once.
# Usage: scripts/install-tansu.sh [TOOLS_DIR]   (default: $WASMFLOW_TOOLS or ./.tools)
set -euo pipefail
tools="${1:-${WASMFLOW_TOOLS:-$(cd "$(dirname "$0")/.." && pwd)/.tools}}"
if [ -x "$tools/bin/tansu" ]; then
    echo "tansu: $tools/bin/tansu"
    exit 0
fi
echo "installing tansu into $tools (takes ~15 minutes on 2 cores, once)"
cargo install tansu --locked --features libsql --root "$tools"
