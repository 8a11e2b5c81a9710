#!/usr/bin/env bash
# Where the CPU of a sequential 1 GiB read goes, and why a FUSE read cannot keep up with a plain HTTP client on
# this 2-core machine. Not a test; run it by hand (root).
#   scripts/bench/read-cpu.sh [FILE_MIB]        ROUNDS=3 by default; PERF=1 adds a system-wide profile
# The server's page cache is warm throughout, so no disk is involved and every path is bound by CPU and memory
# copies. Three paths read the same bytes, one at a time:
#   page cache   fio reads a page-cached local file: the kernel's copy to the reader, alone;
#   plain GET    examples/s3_throughput, one aws-sdk-s3 GET of the object from the gateway, body discarded;
#   lakefs-fuse  fio (1 job, 1 MiB blocks) reads the object through a fresh mount on the same gateway.
# For each run it prints MiB/s and the CPU seconds spent by the reader (fio or the plain client), the mount and
# the server, plus the machine's idle time (2 cores), all from /proc.
set -euo pipefail
cd "$(dirname "$0")/../.."
file_mib=${1:-1024}
rounds=${ROUNDS:-3}
work=$(mktemp -d /tmp/lakefs-bench-cpu.XXXXXX)
port=18125
ep=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=AKIAIOSFOLQUICKSTART AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
export LAKECTL_SERVER_ENDPOINT_URL=$ep LAKECTL_CREDENTIALS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID \
  LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
server_pid=
cleanup() {
  fusermount3 -u "$work/mnt" 2>/dev/null || fusermount3 -uz "$work/mnt" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

command -v fio >/dev/null && command -v fusermount3 >/dev/null && [ -x /usr/bin/time ] ||
  { apt-get update -qq && apt-get install -y -qq fio fuse3 time >/dev/null; }
if [ -n "${PERF:-}" ] && ! command -v perf >/dev/null; then apt-get install -y -qq linux-perf >/dev/null; fi
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q --bin lakefs-fuse --example s3_throughput
bin=$target/release/lakefs-fuse
sdk=$target/release/examples/s3_throughput

"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do curl -sf "$ep/_health" >/dev/null && break; sleep 0.1; done
curl -sf -u "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H 'Content-Type: application/json' \
  -d '{"name":"bench","storage_namespace":"local://bench","default_branch":"main"}' "$ep/api/v1/repositories" >/dev/null
head -c "$((file_mib << 20))" /dev/urandom >"$work/file"
"$sdk" "$ep" bench main/big.bin "$work/file" 8 put >/dev/null
"$sdk" "$ep" bench main/big.bin /dev/null 1 get >/dev/null # warms the server's copy of the blob
mkdir -p "$work/mnt"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime of a live process, in clock ticks
idle_ticks() { awk '/^cpu / {print $5 + $6}' /proc/stat; }
hz=$(getconf CLK_TCK)
secs() { echo "scale=2; $1 / $hz" | bc; }
gib=$(echo "scale=4; $file_mib / 1024" | bc)
per_gib() { echo "scale=2; $1 / $gib" | bc; } # seconds -> seconds per GiB
mib_per_s() { echo "scale=1; $file_mib / $1" | bc; }

run() { # NAME COMMAND... : runs the reader under /usr/bin/time and prints one table row
  local name=$1 mount_pid=${MOUNT_PID:-}
  shift
  local s0 m0=0 i0 t0 t1
  s0=$(ticks "$server_pid")
  [ -n "$mount_pid" ] && m0=$(ticks "$mount_pid")
  i0=$(idle_ticks)
  t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$work/time" "$@" >/dev/null 2>&1
  t1=$(date +%s.%N)
  local reader mount=- server idle
  reader=$(per_gib "$(awk '{print $1 + $2}' "$work/time")")
  [ -n "$mount_pid" ] && mount=$(per_gib "$(secs $(($(ticks "$mount_pid") - m0)))")
  server=$(per_gib "$(secs $(($(ticks "$server_pid") - s0)))")
  idle=$(per_gib "$(secs $(($(idle_ticks) - i0)))")
  echo "| $name | $(mib_per_s "$(echo "$t1 - $t0" | bc)") | $reader | $mount | $server | $idle |" | tee -a "$work/rows"
}

fio_read=(fio --name=seq --rw=read --bs=1M --ioengine=psync --readonly)

"${fio_read[@]}" --filename="$work/file" >/dev/null 2>&1 # brings the local file into the page cache
echo "| path | MiB/s | reader CPU s/GiB | mount CPU s/GiB | server CPU s/GiB | machine idle s/GiB |"
echo "|---|---|---|---|---|---|"
for _ in $(seq "$rounds"); do
  run "page cache (local file)" "${fio_read[@]}" --filename="$work/file"
  run "plain aws-sdk-s3 GET" "$sdk" "$ep" bench main/big.bin /dev/null 1 get
  "$bin" mount lakefs://bench/main "$work/mnt" -o read_only
  MOUNT_PID=$(pgrep -f "lakefs-fuse mount lakefs://bench/main $work/mnt" | head -1) \
    run "lakefs-fuse (fio)" "${fio_read[@]}" --filename="$work/mnt/big.bin"
  fusermount3 -u "$work/mnt"
done

echo "medians:"
python3 - "$work/rows" <<'EOT'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    rows.setdefault(cells[0], []).append(cells[1:])
for name, runs in rows.items():
    medians = []
    for column in zip(*runs):
        values = [float(v) for v in column if v != "-"]
        medians.append(f"{statistics.median(values):g}" if values else "-")
    print(f"| {name} | " + " | ".join(medians) + " |")
EOT

[ -n "${PERF:-}" ] || exit 0
# The same mount read under a system-wide profile: the share of all samples (2 cores, idle included) that each
# process spends in the functions that copy the data. Thread names: the server's runtime is "tokio-rt-worker",
# the mount's "lakefs-fuse-rt" (its HTTP client) and "fuser-N" (its FUSE request threads).
"$bin" mount lakefs://bench/main "$work/mnt" -o read_only
perf record -F 1999 -a -g -o "$work/perf.data" -- "${fio_read[@]}" --filename="$work/mnt/big.bin" >/dev/null 2>&1
fusermount3 -u "$work/mnt"
echo
echo "| process | copy function | % of all samples |"
echo "|---|---|---|"
perf report -i "$work/perf.data" --no-children --sort comm,symbol --stdio -g none 2>/dev/null |
  awk '$1 ~ /%$/ {
         comm = $2; sym = $4; sub(/^fuser-[0-9]+$/, "fuser-N", comm)
         if (sym ~ /^(_copy_to_iter|_copy_from_iter|__pi_memcpy|__memmove|__memcpy|memcpy)/) share[comm " | " sym] += $1
         if (comm == "swapper") idle += $1
       }
       END { for (k in share) if (share[k] >= 0.5) printf "| %s | %.1f |\n", k, share[k]; printf "| idle (swapper) | - | %.1f |\n", idle }' |
  sort -t'|' -k4 -rn
