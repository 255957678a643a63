#!/usr/bin/env bash
# `make run`: start a local broker and a local S3 server, create a topic with 8 partitions,
# produce sample data, run jobs/demo.toml (Kafka source x4 -> counter -> exactly-once files)
# with its checkpoints on S3, show the result, stop. `make run WORKERS=3` runs the job's subtasks
# in three worker processes (docs/distributed.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools="${WASMFLOW_TOOLS:-$root/.tools}"
work="$root/target/demo"
rm -rf "$work" && mkdir -p "$work/broker"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bootstrap="127.0.0.1:$port"
echo "starting tansu on $bootstrap (data in $work/broker)"
(cd "$work/broker" && exec "$tools/bin/tansu" broker --listener-url "tcp://$bootstrap" --advertised-listener-url "tcp://$bootstrap" --storage-engine sqlite://tansu.db > tansu.log 2>&1) &
broker=$!
s3port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "starting moto_server (S3) on 127.0.0.1:$s3port for the checkpoints"
"$tools/bin/moto_server" -H 127.0.0.1 -p "$s3port" > "$work/moto.log" 2>&1 &
s3=$!
trap 'kill $broker $s3 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 300); do (echo > "/dev/tcp/127.0.0.1/$s3port") 2>/dev/null && break; sleep 0.1; done
python3 -c "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:$s3port/demo', method='PUT'))"
# The S3 client reads the AWS_* environment (docs/object-storage.md); moto takes any key.
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_REGION=us-east-1 AWS_ENDPOINT="http://127.0.0.1:$s3port" AWS_ALLOW_HTTP=true
"$tools/bin/tansu" topic create --broker "tcp://$bootstrap" --partitions 8 demo-events > /dev/null
cargo run -q --release -p wasmflow-tests --bin kafka-tool -- produce "$bootstrap" demo-events 8 25000
# The job file stays as it is: the broker address comes from the environment (WASMFLOW__ + the
# key path, `__` between segments), the checkpoint and savepoint locations from --set
# (docs/cli.md, overrides). Its other paths (../target/...) are relative to jobs/.
workers=()
if [ -n "${WORKERS:-}" ]; then
    echo "running the job on $WORKERS worker processes"
    workers=(--workers "$WORKERS")
fi
WASMFLOW__OPERATORS__EVENTS__GRANTS__KAFKA__BOOTSTRAP_SERVERS="$bootstrap" \
    target/release/wasmflow run jobs/demo.toml --set checkpoints.dir=s3://demo/jobs/demo --set savepoints.dir="$work/savepoints" "${workers[@]}"
echo
echo "output: $(cat "$work"/out/part-* | grep -vc '^[0-9]*$') records in $(ls "$work/out" | grep -c '^part-') committed files under $work/out"
echo "counter totals: $(cat "$work"/out/part-* | grep '^[0-9]*$' | paste -sd+ -)"
cargo run -q --release -p wasmflow-tests --bin kafka-tool -- committed "$bootstrap" wasmflow-demo demo-events 8
last=$(python3 -c "import re,urllib.request as u; keys=re.findall(r'<Key>([^<]*)/_metadata</Key>', u.urlopen('http://127.0.0.1:$s3port/demo?list-type=2&prefix=jobs/demo/').read().decode()); print(max(keys, key=lambda k: int(k.rsplit('-',1)[1])))")
echo "the last checkpoint, on S3:"
target/release/wasmflow inspect "s3://demo/$last" | head -4
echo "watch a running job in the dashboard (the URL it prints; Ctrl-C stops it):"
echo "  target/release/wasmflow run jobs/example.toml --set operators.numbers.config.count=10000000"
