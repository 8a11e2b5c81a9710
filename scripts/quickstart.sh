#!/usr/bin/env bash
# The first minute with lakefs-fuse: builds it, starts the embedded lakeFS-compatible server with a sample
# repository, and (once the mount is available in this build) mounts it.
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
scripts/setup.sh
echo "building lakefs-fuse (release)..."
cargo build --release -q
bin=$repo_root/target/release/lakefs-fuse

if ! curl -sf "$endpoint/_health" >/dev/null 2>&1; then
  nohup "$bin" serve --data-dir "$dir/data" --listen 127.0.0.1:8000 >"$dir/server.log" 2>&1 &
  echo $! >"$dir/server.pid"
  for _ in $(seq 100); do curl -sf "$endpoint/_health" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -sf "$endpoint/_health" >/dev/null || { echo "server did not start; see $dir/server.log" >&2; exit 1; }
fi
nohup python3 scripts/sample_hook.py 8099 "$endpoint" >"$dir/hook.log" 2>&1 &
echo $! >"$dir/hook.pid"
python3 scripts/sample_repo.py "$endpoint"

cat <<EOM

lakefs-fuse quickstart is running.
  server:     $endpoint  (keys: AKIAIOSFOLQUICKSTART / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY)
  data:       $dir/data       log: $dir/server.log

Try it with the official clients, e.g.:
  aws --endpoint-url $endpoint s3 ls s3://quickstart/main/
  curl -u AKIAIOSFOLQUICKSTART:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY $endpoint/api/v1/repositories/quickstart/branches
Stop it with: scripts/quickstart.sh stop $dir
EOM
