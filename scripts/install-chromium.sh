#!/usr/bin/env bash
# Installs a headless-capable Chromium (Debian's `chromium` package) for the dashboard's browser
# test, once. Set WASMFLOW_CHROMIUM to use another Chromium/Chrome binary instead.
set -euo pipefail
if [ -n "${WASMFLOW_CHROMIUM:-}" ] && [ -x "$WASMFLOW_CHROMIUM" ]; then
    echo "chromium: $WASMFLOW_CHROMIUM"
    exit 0
fi
for b in chromium chromium-browser; do
    if command -v "$b" >/dev/null; then
        echo "chromium: $(command -v "$b")"
        exit 0
    fi
done
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
echo "installing Debian's chromium (headless browser for the dashboard test)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
