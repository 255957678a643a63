#!/usr/bin/env bash
# Installs Apache Flink's jars for the side-by-side benchmark into the project's tools folder,
# once: PyPI's apache-flink-libraries wheel carries them (lib/flink-dist-*.jar and friends).
# Usage: scripts/install-flink.sh [TOOLS_DIR]   (default: $WASMFLOW_TOOLS or ./.tools)
# Needs a JDK 17 (`javac`, `java`): Debian's openjdk-17-jdk-headless.
set -euo pipefail
tools="${1:-${WASMFLOW_TOOLS:-$(cd "$(dirname "$0")/.." && pwd)/.tools}}"
version=2.3.0
lib="$tools/flink/wheel/pyflink/lib"
if [ -f "$lib/flink-dist-$version.jar" ]; then
    echo "flink: $lib"
    exit 0
fi
if ! command -v javac >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jdk-headless
fi
echo "installing Apache Flink $version (PyPI apache-flink-libraries, 329 MB) into $tools/flink"
mkdir -p "$tools/flink"
python3 -m pip download --no-deps --quiet "apache-flink-libraries==$version" -d "$tools/flink"
python3 -m zipfile -e "$tools/flink/apache_flink_libraries-$version-py2.py3-none-any.whl" "$tools/flink/wheel"
rm "$tools/flink/apache_flink_libraries-$version-py2.py3-none-any.whl"
echo "flink: $lib"
