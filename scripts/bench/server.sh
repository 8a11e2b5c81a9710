#!/usr/bin/env bash
# Gateway throughput benchmark: single-stream and 8-stream PUT and GET of one object (default 1 GiB) through the
# S3 gateway of `lakefs-fuse serve`, in the same run as
#   - the limit: reading the stored blob file with dd from the page cache, and
#   - garage (a Rust S3 server; `cargo install garage --root /opt/garage`), when installed,
# plus the server's peak RSS (VmHWM). Prints a markdown table. Not a test: run it by hand.
#   scripts/bench/server.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/../.."
size_mib=${1:-1024}
work=$(mktemp -d /tmp/lakefs-bench-server.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release -q --bin lakefs-fuse --example s3_throughput
bin=target/release/lakefs-fuse
tool=target/release/examples/s3_throughput
garage=${GARAGE:-$(command -v garage || echo /opt/garage/bin/garage)}

echo "generating a ${size_mib} MiB file..." >&2
head -c "$((size_mib << 20))" /dev/urandom >"$work/object"

run() { # run LABEL ENDPOINT BUCKET KEY STREAMS MODE
  local out
  out=$("$tool" "$2" "$3" "$4" "$work/object" "$5" "$6")
  printf '| %s | %s | %s | %s |\n' "$1" "$6" "$5" "$(sed -E 's/.*"mib_per_s":([0-9.]+).*/\1/' <<<"$out")"
}

echo "| server | op | streams | MiB/s |"
echo "|---|---|---|---|"

# lakefs-fuse serve
port=18123
export AWS_ACCESS_KEY_ID=AKIAIOSFOLQUICKSTART AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
"$bin" serve --data-dir "$work/lakefs" --listen "127.0.0.1:$port" >"$work/lakefs.log" 2>&1 &
server_pid=$!
pids+=("$server_pid")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/_health" >/dev/null && break; sleep 0.1; done
curl -sf -u "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H 'Content-Type: application/json' \
  -d '{"name":"bench","storage_namespace":"local://bench"}' "http://127.0.0.1:$port/api/v1/repositories" >/dev/null
ep=http://127.0.0.1:$port
run lakefs-fuse "$ep" bench main/one "1" put
run lakefs-fuse "$ep" bench main/eight "8" put
run lakefs-fuse "$ep" bench main/one "1" get
run lakefs-fuse "$ep" bench main/eight "8" get
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")

# the limit: the stored blob (content-addressed by SHA-256) read from the page cache
sha=$(sha256sum "$work/object" | cut -d' ' -f1)
blob=$(find "$work/lakefs" -type f -name "$sha*" | head -1)
if [ -n "$blob" ]; then
  cat "$blob" >/dev/null
  start=$(date +%s.%N); cat "$blob" >/dev/null; end=$(date +%s.%N)
  printf '| limit (cat blob, page cache) | get | 1 | %.1f |\n' "$(echo "$size_mib / ($end - $start)" | bc -l)"
fi

# garage, same machine, same tool
if [ -x "$garage" ]; then
  g=$work/garage
  mkdir -p "$g"
  cat >"$g/garage.toml" <<EOT
metadata_dir = "$g/meta"
data_dir = "$g/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:3911"
rpc_public_addr = "127.0.0.1:3911"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:3910"
root_domain = ".s3.garage.localhost"
EOT
  "$garage" -c "$g/garage.toml" server >"$g/log" 2>&1 &
  pids+=("$!")
  sleep 2
  node=$("$garage" -c "$g/garage.toml" status 2>/dev/null | awk '/^[0-9a-f]{16}/ {print $1; exit}')
  "$garage" -c "$g/garage.toml" layout assign -z dc1 -c 100G "$node" >/dev/null
  "$garage" -c "$g/garage.toml" layout apply --version 1 >/dev/null
  "$garage" -c "$g/garage.toml" bucket create bench >/dev/null
  keyinfo=$("$garage" -c "$g/garage.toml" key create bench-key)
  "$garage" -c "$g/garage.toml" bucket allow --read --write --owner bench --key bench-key >/dev/null
  AWS_ACCESS_KEY_ID=$(awk '/Key ID/ {print $NF}' <<<"$keyinfo") \
  AWS_SECRET_ACCESS_KEY=$(awk '/Secret key/ {print $NF}' <<<"$keyinfo") bash -c "
    $(declare -f run); tool=$tool; work=$work
    run garage http://127.0.0.1:3910 bench main/one 1 put
    run garage http://127.0.0.1:3910 bench main/eight 8 put
    run garage http://127.0.0.1:3910 bench main/one 1 get
    run garage http://127.0.0.1:3910 bench main/eight 8 get"
else
  echo "| garage | not installed ($garage) | | |"
fi
echo
echo "lakefs-fuse serve peak RSS (VmHWM): $((rss_kib / 1024)) MiB"
