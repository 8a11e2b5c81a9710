#!/usr/bin/env bash
# Listing benchmark: `ls -l` of one directory of many objects on a mounted branch, cold (fresh mount, dropped
# kernel caches), warm three times in a row, and once more after metadata_ttl (the listing must revalidate).
# The listing rows of scripts/bench/read.sh, alone and repeated; not a test, run it by hand (root).
#   scripts/bench/list.sh [OBJECTS]        (default 100000; PEERS=1 also times s3fs and rclone)
set -euo pipefail
cd "$(dirname "$0")/../.."
objects=${1:-100000}
work=$(mktemp -d /tmp/lakefs-bench-list.XXXXXX)
port=$((20000 + RANDOM % 20000))
ep=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=AKIAIOSFOLQUICKSTART AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
export LAKECTL_SERVER_ENDPOINT_URL=$ep LAKECTL_CREDENTIALS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID \
  LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
tools=(lakefs-fuse)
[ -n "${PEERS:-}" ] && tools+=(s3fs rclone)
server_pid=

cleanup() {
  for t in "${tools[@]}"; do fusermount3 -u "$work/mnt/$t" 2>/dev/null || fusermount3 -uz "$work/mnt/$t" 2>/dev/null || true; done
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${PEERS:-}" ] && ! { command -v s3fs && command -v rclone; } >/dev/null; then
  apt-get update -qq && apt-get install -y -qq s3fs rclone fuse3 >/dev/null
fi
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q --bin lakefs-fuse --example populate_store
bin=$target/release/lakefs-fuse
"$target/release/examples/populate_store" "$work/data" bench flat "$objects" 1 >&2
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do curl -sf "$ep/_health" >/dev/null && break; sleep 0.1; done
printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$work/s3fs.passwd"
chmod 600 "$work/s3fs.passwd"
printf '[lk]\ntype = s3\nprovider = Other\nendpoint = %s\naccess_key_id = %s\nsecret_access_key = %s\nforce_path_style = true\n' \
  "$ep" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$work/rclone.conf"

mount_tool() { # fresh mount, cold kernel caches
  local t=$1 m=$work/mnt/$1
  mkdir -p "$m"
  sync; echo 3 >/proc/sys/vm/drop_caches
  case $t in
    lakefs-fuse) "$bin" mount lakefs://bench/main "$m" ;;
    s3fs) s3fs bench:/main "$m" -o url="$ep",use_path_request_style,passwd_file="$work/s3fs.passwd",endpoint=us-east-1 ;;
    rclone) env -u AWS_CA_BUNDLE rclone mount lk:bench/main "$m" --config "$work/rclone.conf" --daemon ;;
  esac
  for _ in $(seq 100); do mountpoint -q "$m" && [ -e "$m/flat" ] && return 0; sleep 0.1; done
  echo "mount of $t failed" >&2; return 1
}

timed_ls() {
  local start end
  start=$(date +%s.%N)
  ls -l "$1" >/dev/null
  end=$(date +%s.%N)
  printf '%.2f' "$(echo "$end - $start" | bc -l)"
}

echo "| tool | cold | warm 1 | warm 2 | warm 3 | after metadata_ttl | (s, ls -l of $objects objects) |"
echo "|---|---|---|---|---|---|---|"
for t in "${tools[@]}"; do
  mount_tool "$t"
  m=$work/mnt/$t/flat
  cold=$(timed_ls "$m"); w1=$(timed_ls "$m"); w2=$(timed_ls "$m"); w3=$(timed_ls "$m")
  sleep 2 # past metadata_ttl (1 s)
  after=$(timed_ls "$m")
  echo "| $t | $cold | $w1 | $w2 | $w3 | $after | |"
  fusermount3 -u "$work/mnt/$t"
done
