#!/usr/bin/env bash
# Read-side benchmark of the mount against its peers, all on the same `lakefs-fuse serve` and in the same run:
# lakefs-fuse, s3fs and rclone mount (bucket = repository, prefix = branch), plus the plain aws-sdk-s3 client
# (examples/s3_throughput) as the ranged-GET ceiling. Prints a markdown table; not a test, run it by hand (root).
#   scripts/bench/read.sh [FILE_MIB] [RANDREAD_SECONDS] [LIST_OBJECTS]
# defaults: 1024 MiB files, 60 s random reads, 100000 objects for ls -l and find.
# Every mount starts with cold kernel caches, the server's included (its blobs are read from disk). The plain
# client is measured the same way, then warm; lakefs-fuse's sequential read is also repeated with the server's
# page cache warm, so each of its two ratios compares like with like.
# The cold sequential read, the plain client's cold GET and the random reads run ROUNDS times (default 3),
# interleaved, in an order that rotates each round; the table shows each one's median. This VM's disk and CPU
# drift by +-25% over minutes, so one tool measured minutes after another would compare the drift, not the tools.
set -euo pipefail
cd "$(dirname "$0")/../.."
file_mib=${1:-1024}
rand_secs=${2:-60}
objects=${3:-100000}
op_timeout=${OP_TIMEOUT:-300}
rounds=${ROUNDS:-3}
work=$(mktemp -d /tmp/lakefs-bench-read.XXXXXX)
port=18124
ep=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=AKIAIOSFOLQUICKSTART AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
export LAKECTL_SERVER_ENDPOINT_URL=$ep LAKECTL_CREDENTIALS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID \
  LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
tools=(lakefs-fuse s3fs rclone)
server_pid=
lakefs_opts=

unmount_tool() { fusermount3 -u "$work/mnt/$1" 2>/dev/null || fusermount3 -uz "$work/mnt/$1" 2>/dev/null || true; }
unmount_all() { for t in "${tools[@]}"; do unmount_tool "$t"; done; }
cleanup() { unmount_all; [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

command -v s3fs >/dev/null && command -v rclone >/dev/null && command -v fio >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq s3fs rclone fio fuse3 >/dev/null; }
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q --bin lakefs-fuse --example s3_throughput --example populate_store
bin=$target/release/lakefs-fuse

echo "loading data: $objects objects in one directory, $objects in 1000 directories, 4 files of $file_mib MiB" >&2
"$target/release/examples/populate_store" "$work/data" bench flat "$objects" 1 >&2
"$target/release/examples/populate_store" "$work/data" bench tree "$objects" 1000 >&2
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do curl -sf "$ep/_health" >/dev/null && break; sleep 0.1; done
head -c "$((file_mib << 20))" /dev/urandom >"$work/file"
for i in 0 1 2 3; do "$target/release/examples/s3_throughput" "$ep" bench "main/big/file$i.bin" "$work/file" 8 put >/dev/null; done
rm -f "$work/file"
curl -sf -u "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H 'Content-Type: application/json' -d '{"message":"big files"}' \
  "$ep/api/v1/repositories/bench/branches/main/commits" >/dev/null

printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$work/s3fs.passwd"
chmod 600 "$work/s3fs.passwd"
cat >"$work/rclone.conf" <<EOT
[lk]
type = s3
provider = Other
endpoint = $ep
access_key_id = $AWS_ACCESS_KEY_ID
secret_access_key = $AWS_SECRET_ACCESS_KEY
force_path_style = true
EOT

cold_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

mount_tool() { # TOOL [warm]: fresh mount; cold kernel caches (the server's too) unless "warm"
  local t=$1 m=$work/mnt/$1
  fusermount3 -u "$m" 2>/dev/null || true
  mkdir -p "$m"
  [ "${2:-}" = warm ] || cold_caches
  case $t in
    lakefs-fuse) "$bin" mount lakefs://bench/main "$m" ${lakefs_opts:-} ;;
    s3fs) s3fs bench:/main "$m" -o url="$ep",use_path_request_style,passwd_file="$work/s3fs.passwd",endpoint=us-east-1 ;;
    rclone) env -u AWS_CA_BUNDLE rclone mount lk:bench/main "$m" --config "$work/rclone.conf" --daemon ;;
  esac
  for _ in $(seq 100); do mountpoint -q "$m" && [ -e "$m/big" ] && return 0; sleep 0.1; done
  echo "mount of $t failed" >&2; return 1
}

timed() { # prints seconds, or ">N" on timeout
  local start end
  start=$(date +%s.%N)
  if timeout "$op_timeout" "$@" >/dev/null 2>&1; then end=$(date +%s.%N); printf '%.2f' "$(echo "$end - $start" | bc -l)"
  else printf '>%s' "$op_timeout"; fi
}

fio_bw() { # fio args... -> MiB/s
  timeout "$op_timeout" fio --output-format=json "$@" 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(round(j["jobs"][0]["read"]["bw"]/1024,1))' || echo "n/a"
}
seq_read() { # MOUNTPOINT -> MiB/s of one sequential reader of big/file0.bin
  fio_bw --name=seq --filename="$1/big/file0.bin" --rw=read --bs=1M --ioengine=psync --readonly
}
fio_iops() {
  timeout $((op_timeout + rand_secs)) fio --output-format=json "$@" 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(round(j["jobs"][0]["read"]["iops"]))' || echo "n/a"
}

pid_of_mount() { pgrep -f "lakefs-fuse mount lakefs://bench/main" | head -1; }
peak_rss() { local pid; pid=$(pid_of_mount); [ -n "$pid" ] && awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status" || echo "n/a"; }

# Peers run with their defaults, which the summary states: s3fs 1.91 keeps each open file in a local temporary
# file (no use_cache; a read miss loads multipart_size x parallel_count = 10 MB x 5 ahead) and leaves the kernel
# page cache on, so its random reads become page-cache hits once the file is local; rclone with
# --vfs-cache-mode off (its default) has no local cache. lakefs-fuse runs with its defaults (max_memory 160 MiB,
# no disk cache); random readers fill the kernel page cache through FUSE_NOTIFY_STORE.
declare -A seq seq4 rand lscold lswarm lswarm2 findt
declare -A rss
sdk_get() { # STREAMS -> MiB/s of a plain aws-sdk-s3 GET of file0
  "$target/release/examples/s3_throughput" "$ep" bench main/big/file0.bin /dev/null "$1" get |
    sed -E 's/.*"mib_per_s":([0-9.]+).*/\1/'
}
median() { printf '%s\n' "$@" | python3 -c 'import statistics,sys
v=[x for x in sys.stdin.read().split() if x.replace(".","",1).isdigit()]
m=statistics.median([float(x) for x in v]) if v else None
print("n/a" if m is None else round(m, 1) if any("." in x for x in v) else round(m))'; }
max_of() { [ "$2" = n/a ] && echo "$1" || echo $(($1 > $2 ? $1 : $2)); }

# The contested measurements, in rounds: each tool's cold sequential read, the plain client's cold GET between
# them, then each tool's random reads. The order rotates so that no tool always runs first or last.
declare -A seq_runs rand_runs
sdk1_runs=()
for r in $(seq "$rounds"); do
  shift_by=$(((r - 1) % ${#tools[@]}))
  order=("${tools[@]:$shift_by}" "${tools[@]:0:$shift_by}")
  echo "== round $r of $rounds: ${order[*]}" >&2
  for t in "${order[@]}"; do
    mount_tool "$t"
    seq_runs[$t]+="$(seq_read "$work/mnt/$t") "
    [ "$t" = lakefs-fuse ] && rss[seq]=$(max_of "${rss[seq]:-0}" "$(peak_rss)")
    unmount_tool "$t"
    [ "$t" = "${order[0]}" ] && { cold_caches; sdk1_runs+=("$(sdk_get 1)"); }
  done
  for t in "${order[@]}"; do
    mount_tool "$t"
    rand_runs[$t]+="$(fio_iops --name=rand --filename="$work/mnt/$t/big/file0.bin" --rw=randread --bs=4k \
      --ioengine=psync --readonly --time_based --runtime="$rand_secs" --norandommap) "
    [ "$t" = lakefs-fuse ] && rss[rand]=$(max_of "${rss[rand]:-0}" "$(peak_rss)")
    unmount_tool "$t"
  done
done
for t in "${tools[@]}"; do
  # shellcheck disable=SC2086 # word splitting intended: one value per round
  seq[$t]=$(median ${seq_runs[$t]})
  # shellcheck disable=SC2086
  rand[$t]=$(median ${rand_runs[$t]})
done
sdk1=$(median "${sdk1_runs[@]}")

# Measured once: the rest of the jobs are not close calls.
for t in "${tools[@]}"; do
  echo "== $t" >&2
  m=$work/mnt/$t
  if [ "$t" = lakefs-fuse ]; then # with the server's page cache holding the file, as the warm GET below
    mount_tool "$t"
    seq_read "$m" >/dev/null
    mount_tool "$t" warm
    seq_warm=$(seq_read "$m")
  fi
  mount_tool "$t"
  # Options before the first --name are global: every reader uses 1 MiB reads (fio's default is 4 KiB).
  seq4[$t]=$(fio_bw --rw=read --bs=1M --ioengine=psync --readonly --group_reporting \
    --name=r0 --filename="$m/big/file0.bin" --name=r1 --filename="$m/big/file1.bin" \
    --name=r2 --filename="$m/big/file2.bin" --name=r3 --filename="$m/big/file3.bin")
  mount_tool "$t"
  lscold[$t]=$(timed ls -l "$m/flat")
  lswarm[$t]=$(timed ls -l "$m/flat")
  sleep 2 # past metadata_ttl (1 s): the listing must be revalidated, not just reused
  lswarm2[$t]=$(timed ls -l "$m/flat")
  mount_tool "$t"
  findt[$t]=$(timed find "$m/tree")
  fusermount3 -u "$m"
done

# The memory bound with a larger budget: random reads and a sequential read with max_memory=512M.
echo "== lakefs-fuse max_memory=512M" >&2
lakefs_opts="-o max_memory=512M"
m=$work/mnt/lakefs-fuse
mount_tool lakefs-fuse
rand512=$(fio_iops --name=rand --filename="$m/big/file0.bin" --rw=randread --bs=4k --ioengine=psync --readonly \
  --time_based --runtime="$rand_secs" --norandommap)
rss[rand512]=$(peak_rss)
mount_tool lakefs-fuse
seq512=$(seq_read "$m")
rss[seq512]=$(peak_rss)
fusermount3 -u "$m"
lakefs_opts=

# Warm: from the server's page cache, like the mount's second sequential read.
sdk_get 1 >/dev/null
sdk1_warm=$(sdk_get 1)
sdk8=$(sdk_get 8)

# Summary: one row per job, the best peer, and lakefs-fuse's ratio to it (>= 1 means lakefs-fuse is ahead; for
# times the ratio is peer time / our time).
row() { # name higher|lower ours s3fs rclone
  python3 - "$@" <<'PY'
import sys
name, better, *vals = sys.argv[1:]
def num(v):
    try: return float(v.lstrip('>'))
    except ValueError: return None
ours, peers = num(vals[0]), [(num(v), t) for v, t in zip(vals[1:], ["s3fs", "rclone"])]
peers = [(v, t) for v, t in peers if v is not None]
ratio = "n/a"
if ours and peers:
    best, who = (max if better == "higher" else min)(peers)
    r = ours / best if better == "higher" else best / ours
    ratio = f"{r:.2f} ({who})"
print(f"| {name} | {vals[0]} | {vals[1]} | {vals[2]} | {ratio} |")
PY
}
echo "| job | lakefs-fuse | s3fs | rclone | lakefs-fuse vs best peer |"
echo "|---|---|---|---|---|"
row "seq read ${file_mib} MiB, 1 job, MiB/s" higher "${seq[lakefs-fuse]}" "${seq[s3fs]}" "${seq[rclone]}"
row "4 readers on 4 files, aggregate MiB/s" higher "${seq4[lakefs-fuse]}" "${seq4[s3fs]}" "${seq4[rclone]}"
row "random 4 KiB reads, ${rand_secs} s, IOPS" higher "${rand[lakefs-fuse]}" "${rand[s3fs]}" "${rand[rclone]}"
row "ls -l of $objects objects, cold, s" lower "${lscold[lakefs-fuse]}" "${lscold[s3fs]}" "${lscold[rclone]}"
row "ls -l of $objects objects, warm (again at once), s" lower "${lswarm[lakefs-fuse]}" "${lswarm[s3fs]}" "${lswarm[rclone]}"
row "ls -l of $objects objects, warm (after metadata_ttl), s" lower "${lswarm2[lakefs-fuse]}" "${lswarm2[s3fs]}" "${lswarm2[rclone]}"
row "find over $objects objects in 1000 dirs, s" lower "${findt[lakefs-fuse]}" "${findt[s3fs]}" "${findt[rclone]}"
echo
echo "Each round's values (the table shows their medians):"
for t in "${tools[@]}"; do echo "- $t: cold sequential read ${seq_runs[$t]}MiB/s; random reads ${rand_runs[$t]}IOPS"; done
echo "- aws-sdk-s3, 1 stream, cold: ${sdk1_runs[*]} MiB/s"
echo
python3 - "${seq[lakefs-fuse]}" "$sdk1" "${seq_warm:-n/a}" "$sdk1_warm" "$sdk8" <<'PY'
import sys
ours, one, ours_warm, one_warm, eight = sys.argv[1:]
print(f"aws-sdk-s3 GET of the same file, 1 stream: {one} MiB/s (median) from a cold server cache, {one_warm} MiB/s warm; "
      f"8 ranged streams warm: {eight} MiB/s")
def share(a, b):
    try:
        return f"{float(a) / float(b):.0%}"
    except ValueError:
        return "n/a"
print(f"lakefs-fuse sequential read = {share(ours, one)} of 1 stream, both cold (target >= 80%); "
      f"with the server's cache warm: {ours_warm} MiB/s = {share(ours_warm, one_warm)} of the warm stream")
PY
echo "lakefs-fuse peak RSS (VmHWM), defaults (max_memory 160 MiB): sequential read ${rss[seq]} MiB (target < 300)," \
  "random reads ${rss[rand]} MiB (target < 224)"
echo "lakefs-fuse with max_memory=512M: random reads ${rand512} IOPS, peak RSS ${rss[rand512]} MiB;" \
  "sequential read ${seq512} MiB/s, peak RSS ${rss[seq512]} MiB (target < 576)"
