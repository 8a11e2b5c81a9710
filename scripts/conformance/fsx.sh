#!/usr/bin/env bash
# Data integrity of a mounted branch: runs fsx (`cargo install fsx`, the Rust rewrite of the file system
# exerciser) on one file of a freshly mounted branch - pread/pwrite, mmap reads, mmap writes with msync,
# ftruncate, fsync/fdatasync, msync(MS_INVALIDATE) and close/reopen, every read checked against fsx's own model
# of the file - then commits through `.lakefs/commit`, unmounts, mounts the branch again (fresh cache and
# staging dir) and checks that the committed file is byte for byte what fsx left.
#   scripts/conformance/fsx.sh [OPS] [SEED]     defaults: 100000 operations, seed 1
set -euo pipefail
cd "$(dirname "$0")/../.."
here=scripts/conformance
source "$here/lib.sh"
ops=${1:-100000}
seed=${2:-1}

[ "$(id -u)" = 0 ] || { echo "fsx.sh: needs root (FUSE mount with allow_other)" >&2; exit 1; }
conf_apt fuse3 curl python3
conf_install_tool fsx 0.3.2

conf_start conformance
mnt=$CONF_WORK/mnt
conf_mount conformance main "$mnt"

cat >"$CONF_WORK/fsx.toml" <<'EOF'
# The default 256 KiB file, operations up to 64 KiB; every operation the mount claims. Each close/reopen, fsync
# and fdatasync uploads the whole file to the staging branch, so they are rarer than the data operations (about
# 1% of a run: still a thousand uploads in 100,000 operations) to keep a run within minutes on a debug build.
flen = 262144

[opsize]
max = 65536

[weights]
close_open = 0.15
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 1
truncate = 2
fsync = 0.15
fdatasync = 0.15
EOF

file=$mnt/fsx/testfile
mkdir -p "$mnt/fsx"
start=$(date +%s)
if ! "$CONF_TOOLS/bin/fsx" -f "$CONF_WORK/fsx.toml" -N "$ops" -S "$seed" -P "$CONF_WORK" "$file" \
  >"$CONF_WORK/fsx.log" 2>&1; then
  echo "fsx: FAILED (data mismatch or I/O error) after $(($(date +%s) - start)) s:" >&2
  tail -n 60 "$CONF_WORK/fsx.log" >&2
  exit 1
fi
elapsed=$(($(date +%s) - start))
expected=$(md5sum <"$file" | cut -d' ' -f1)
size=$(stat -c %s "$file")
echo "fsx: $ops operations, seed $seed, no mismatch, $elapsed s; file $size bytes, md5 $expected"

echo "fsx run ($ops ops, seed $seed)" >"$mnt/.lakefs/commit"
conf_unmount "$mnt"
rm -rf "$CONF_WORK/cache"
conf_mount conformance main "$mnt"
actual=$(md5sum <"$file" | cut -d' ' -f1)
if [ "$actual" != "$expected" ]; then
  echo "fsx: the committed file read from a fresh mount differs: md5 $actual, expected $expected" >&2
  exit 1
fi
echo "fsx: committed file re-read from a fresh mount matches ($size bytes)"
