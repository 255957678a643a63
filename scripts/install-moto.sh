#!/usr/bin/env bash
# Installs the S3-compatible test server `moto_server` (PyPI's moto[server]) into a Python
# virtual environment in the project's tools folder, once. Tests and the demo start it on
# loopback as the object store for checkpoints (it honours S3's conditional create).
# Usage: scripts/install-moto.sh [TOOLS_DIR]   (default: $WASMFLOW_TOOLS or ./.tools)
set -euo pipefail
tools="${1:-${WASMFLOW_TOOLS:-$(cd "$(dirname "$0")/.." && pwd)/.tools}}"
version=5.2.5
if [ -x "$tools/bin/moto_server" ] && "$tools/moto/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$version')" 2>/dev/null; then
    echo "moto_server: $tools/bin/moto_server"
    exit 0
fi
echo "installing moto[server] $version into $tools/moto (PyPI, once)"
python3 -m venv "$tools/moto"
"$tools/moto/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$version"
mkdir -p "$tools/bin"
ln -sf "$tools/moto/bin/moto_server" "$tools/bin/moto_server"
echo "moto_server: $tools/bin/moto_server"
