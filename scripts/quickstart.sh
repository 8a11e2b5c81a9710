#!/usr/bin/env bash
# The first minute with lakefs-fuse: builds it, starts the embedded lakeFS-compatible server with a sample
# repository (CSV, JSON and Parquet), mounts it, copies a local export into main through the mount and commits
# it with `lakefs-fuse commit` (a progress bar while it runs; the pre-merge schema hook checks it).
#   scripts/quickstart.sh [DIR]     DIR holds the server data and the mountpoint (default ~/lakefs-quickstart)
# Stop everything with: scripts/quickstart.sh stop [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$PWD

if [ "${1:-}" = stop ]; then
  dir=${2:-$HOME/lakefs-quickstart}
  fusermount3 -u "$dir/lake" 2>/dev/null || true
  for p in server hook; do [ -f "$dir/$p.pid" ] && kill "$(cat "$dir/$p.pid")" 2>/dev/null; rm -f "$dir/$p.pid"; done
  echo "stopped (data kept in $dir/data)"
  exit 0
fi

dir=${1:-$HOME/lakefs-quickstart}
endpoint=http://127.0.0.1:8000
mkdir -p "$dir"
scripts/setup.sh quickstart
echo "building lakefs-fuse (release)..."
cargo build --release -q
bin=$(realpath "${CARGO_TARGET_DIR:-$repo_root/target}")/release/lakefs-fuse

if ! curl -sf "$endpoint/_health" >/dev/null 2>&1; then
  nohup "$bin" serve --data-dir "$dir/data" --listen 127.0.0.1:8000 >"$dir/server.log" 2>&1 &
  echo $! >"$dir/server.pid"
  for _ in $(seq 100); do curl -sf "$endpoint/_health" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -sf "$endpoint/_health" >/dev/null || { echo "server did not start; see $dir/server.log" >&2; exit 1; }
fi
nohup python3 scripts/sample_hook.py 8099 "$endpoint" >"$dir/hook.log" 2>&1 &
echo $! >"$dir/hook.pid"
.venv/bin/python scripts/sample_repo.py "$endpoint" --export "$dir/export"

mnt=$dir/lake
mkdir -p "$mnt"
if ! mountpoint -q "$mnt"; then
  LAKECTL_SERVER_ENDPOINT_URL=$endpoint \
  LAKECTL_CREDENTIALS_ACCESS_KEY_ID=AKIAIOSFOLQUICKSTART \
  LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY \
    "$bin" mount lakefs://quickstart "$mnt" -o log_file="$dir/mount.log"
fi

# Copy the export through the mount like any directory, then commit it as one atomic change of main.
if [ ! -e "$mnt/main/orders/2026-11-26/_manifest.json" ]; then
  echo "copying $dir/export into $mnt/main through the mount..."
  cp -r "$dir/export/." "$mnt/main/"
  echo "committing with: lakefs-fuse commit $mnt/main -m ..."
  "$bin" commit "$mnt/main" -m "Add the orders of 2026-11-26 (copied through the mount)" --metadata source=quickstart
fi

cat <<EOM

lakefs-fuse quickstart is running: repository "quickstart" is mounted at $mnt
  server: $endpoint (keys AKIAIOSFOLQUICKSTART / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY)
  logs:   $dir/server.log, $dir/mount.log

Five things to try:
  ls $mnt $mnt/main                                  # branches, then objects of main (CSV, JSON, Parquet)
  cat $mnt/main/customers/007.json                   # read; also $mnt/v1/... (a tag) and $mnt/main~1/...
  echo "hello" > $mnt/ingest/notes.txt               # write: goes to a private staging branch
  echo "add notes" > $mnt/ingest/.lakefs/commit      # one atomic commit on ingest
  echo main > $mnt/ingest/.lakefs/merge              # merge ingest into main (the pre-merge schema hook runs)
  cat $mnt/ingest/.lakefs/status                     # what happened, including hook output

The same from the command line, with a progress bar, the new commit id and an exit code per failure:
  $bin commit $mnt/ingest -m "add notes"
  $bin merge $mnt/ingest --into main
  $bin status                                        # every lakefs-fuse mount: uploads, changes, errors

Stop everything with: scripts/quickstart.sh stop $dir
EOM
