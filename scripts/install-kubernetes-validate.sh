#!/usr/bin/env bash
# Installs `kubernetes-validate` (PyPI; it bundles the Kubernetes JSON schemas, so validating
# needs no cluster and no network) into a Python virtual environment in the tools folder, once.
# The deployment test validates deploy/kubernetes/*.yaml with it.
# Usage: scripts/install-kubernetes-validate.sh [TOOLS_DIR]   (default: $WASMFLOW_TOOLS or ./.tools)
set -euo pipefail
tools="${1:-${WASMFLOW_TOOLS:-$(cd "$(dirname "$0")/.." && pwd)/.tools}}"
version=1.37.0
if [ -x "$tools/bin/kubernetes-validate" ] && [ "$("$tools/bin/kubernetes-validate" --version 2>/dev/null | awk '{print $NF}')" = "$version" ]; then
    echo "kubernetes-validate: $tools/bin/kubernetes-validate"
    exit 0
fi
echo "installing kubernetes-validate $version into $tools/k8s (PyPI, once)"
python3 -m venv "$tools/k8s"
"$tools/k8s/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$version"
mkdir -p "$tools/bin"
ln -sf "$tools/k8s/bin/kubernetes-validate" "$tools/bin/kubernetes-validate"
echo "kubernetes-validate: $tools/bin/kubernetes-validate"
