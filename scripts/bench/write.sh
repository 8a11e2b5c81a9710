#!/usr/bin/env bash
# Write-side benchmark of the mount against its peers, all on the same `lakefs-fuse serve` and in the same run:
# lakefs-fuse, s3fs and rclone mount (bucket = repository, prefix = branch), plus a direct multipart upload of the
# same file with aws-sdk-s3 (examples/s3_throughput) as the ceiling. Each tool writes into its own branch, created
# from `main`, so that no tool sees (or commits) another's writes. Prints a markdown table; not a test. Run as root
# (mounts, drops caches); installs s3fs, rclone and fuse3 when missing. Unmounts everything on exit.
#   scripts/bench/write.sh [FILE_MIB] [SMALL_FILES]
# defaults: one 1024 MiB file; 10000 files of 4 KiB.
# Environment: EXTRA_FUSE_OPTS: -o options of a second lakefs-fuse column, "lakefs-fuse-x" (default
# "sync_close,upload_eager=off": each file uploaded whole in its close; empty for none); OP_TIMEOUT bounds each
# job (seconds, default 600); TOOLS: the peers to run (default "s3fs rclone"; empty for lakefs-fuse only, e.g. for
# a quick A/B of two builds with LAKEFS_FUSE_BIN).
#
# What is timed (wall clock), for every tool alike:
#   big:   `dd bs=1M conv=fsync` of a file already in the page cache into the mount, including close, and then
#          until the object is visible on the server with its full size (lakefs-fuse: on its staging branch;
#          s3fs and rclone: on their branch). s3fs and lakefs-fuse upload by the end of fsync, so the wait adds
#          nothing; rclone (--vfs-cache-mode writes --vfs-write-back 0s) uploads after close, and the wait counts
#          its upload.
#   small: one process (python3) creating SMALL_FILES files of 4 KiB in one new directory, each open-write-close;
#          lakefs-fuse then also commits (`echo msg > .lakefs/commit`, which merges into the branch), the peers
#          are timed until every file is listed on the server. lakefs-fuse and rclone upload after close (the
#          commit waits for lakefs-fuse's uploads); s3fs uploads in close.
set -euo pipefail
cd "$(dirname "$0")/../.."
file_mib=${1:-1024}
small=${2:-10000}
op_timeout=${OP_TIMEOUT:-600}
extra=${EXTRA_FUSE_OPTS-sync_close,upload_eager=off}
work=$(mktemp -d /tmp/lakefs-bench-write.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ep=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=AKIAIOSFOLQUICKSTART AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
export LAKECTL_SERVER_ENDPOINT_URL=$ep LAKECTL_CREDENTIALS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID \
  LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
read -r -a peers <<<"${TOOLS-s3fs rclone}"
tools=(lakefs-fuse "${peers[@]}")
[ -n "$extra" ] && tools+=(lakefs-fuse-x)
server_pid=

unmount_all() {
  for t in "${tools[@]}"; do
    [ -d "$work/mnt/$t" ] || continue
    fusermount3 -u "$work/mnt/$t" 2>/dev/null || fusermount3 -uz "$work/mnt/$t" 2>/dev/null || true
  done
}
cleanup() {
  unmount_all
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

command -v s3fs >/dev/null && command -v rclone >/dev/null && command -v fusermount3 >/dev/null ||
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq s3fs rclone fuse3 >/dev/null; }
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q --bin lakefs-fuse --example s3_throughput
bin=${LAKEFS_FUSE_BIN:-$target/release/lakefs-fuse} # LAKEFS_FUSE_BIN: another build (serve and mount), for A/B runs
sdk=$target/release/examples/s3_throughput

api() { # METHOD PATH [JSON]
  curl -sf -u "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -X "$1" -H 'Content-Type: application/json' \
    ${3:+-d "$3"} "$ep/api/v1$2"
}

"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do curl -sf "$ep/_health" >/dev/null && break; sleep 0.1; done
api POST /repositories '{"name":"bench","storage_namespace":"local://bench","default_branch":"main"}' >/dev/null
# One committed object, so that every branch prefix exists for s3fs's mount check.
printf 'seed\n' >"$work/seed"
"$sdk" "$ep" bench main/seed.txt "$work/seed" 1 put >/dev/null
api POST /repositories/bench/branches/main/commits '{"message":"seed"}' >/dev/null
for b in "${tools[@]}" sdk; do api POST /repositories/bench/branches "{\"name\":\"$b\",\"source\":\"main\"}" >/dev/null; done

echo "generating a ${file_mib} MiB file..." >&2
head -c "$((file_mib << 20))" /dev/urandom >"$work/file"
size=$((file_mib << 20))

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

mount_tool() { # fresh mount of the tool's own branch
  local t=$1 m=$work/mnt/$1
  fusermount3 -u "$m" 2>/dev/null || true
  mkdir -p "$m"
  case $t in
    lakefs-fuse) "$bin" mount lakefs://bench/lakefs-fuse "$m" -o "cache_dir=$work/cache-$t" ;;
    lakefs-fuse-x) "$bin" mount lakefs://bench/lakefs-fuse-x "$m" -o "cache_dir=$work/cache-$t,$extra" ;;
    s3fs) s3fs bench:/s3fs "$m" -o url="$ep",use_path_request_style,passwd_file="$work/s3fs.passwd",endpoint=us-east-1 ;;
    rclone) env -u AWS_CA_BUNDLE rclone mount lk:bench/rclone "$m" --config "$work/rclone.conf" --daemon \
      --vfs-cache-mode writes --vfs-write-back 0s --cache-dir "$work/cache-rclone" ;;
  esac
  for _ in $(seq 100); do mountpoint -q "$m" && [ -e "$m/seed.txt" ] && return 0; sleep 0.1; done
  echo "mount of $t failed" >&2
  return 1
}

upload_ref() { # the ref a tool's uploads land on
  case $1 in
    lakefs-fuse*) cat "$work/mnt/$1/.lakefs/staging" ;;
    *) echo "$1" ;;
  esac
}

stat_size() { # REF PATH -> size in bytes, or nothing
  api GET "/repositories/bench/refs/$1/objects/stat?path=$2" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["size_bytes"])' 2>/dev/null || true
}

count_objects() { # REF PREFIX -> number of objects below PREFIX
  python3 - "$ep" "$1" "$2" <<'EOT'
import base64, json, os, sys, urllib.parse, urllib.request
ep, ref, prefix = sys.argv[1:]
auth = base64.b64encode(f"{os.environ['AWS_ACCESS_KEY_ID']}:{os.environ['AWS_SECRET_ACCESS_KEY']}".encode()).decode()
after, count = "", 0
while True:
    q = urllib.parse.urlencode({"prefix": prefix, "after": after, "amount": 1000})
    req = urllib.request.Request(f"{ep}/api/v1/repositories/bench/refs/{ref}/objects/ls?{q}",
                                 headers={"Authorization": "Basic " + auth})
    page = json.load(urllib.request.urlopen(req))
    count += len(page["results"])
    if not page["pagination"]["has_more"]:
        break
    after = page["pagination"]["next_offset"]
print(count)
EOT
}

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc -l; }

unique_content() { # make the big file's content (and so its SHA-256 address on the server) differ per tool
  printf '%-16s' "$1-$RANDOM" | dd of="$work/file" conv=notrunc status=none
}

big_job() { # TOOL -> seconds for the 1 GiB write + close + visible on the server
  local t=$1 m=$work/mnt/$1 start ref deadline
  unique_content "$t"
  cat "$work/file" >/dev/null
  sync
  start=$(now)
  timeout "$op_timeout" dd if="$work/file" of="$m/big.bin" bs=1M conv=fsync status=none || { echo "n/a"; return; }
  ref=$(upload_ref "$t")
  deadline=$(echo "$(now) + $op_timeout" | bc -l)
  until [ "$(stat_size "$ref" big.bin)" = "$size" ]; do
    (($(echo "$(now) > $deadline" | bc -l))) && { echo "n/a"; return; }
    sleep 0.02
  done
  printf '%.2f' "$(elapsed "$start")"
}

small_job() { # TOOL -> seconds to create the small files (lakefs-fuse: and commit them)
  local t=$1 m=$work/mnt/$1 start deadline
  sync
  start=$(now)
  timeout "$op_timeout" python3 - "$m/small" "$small" <<'EOT' || { echo "n/a"; return; }
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
os.mkdir(root)
block = os.urandom(4096)
for i in range(n):
    with open(os.path.join(root, f"f{i:05d}"), "wb") as f:
        f.write(block[:4088] + i.to_bytes(8, "little"))
EOT
  case $t in
    lakefs-fuse*)
      timeout "$op_timeout" sh -c "echo 'small files' > '$m/.lakefs/commit'" || { echo "n/a"; return; }
      ;;
    *)
      deadline=$(echo "$(now) + $op_timeout" | bc -l)
      # -ge: s3fs also stores a `small/` directory marker object.
      until [ "$(count_objects "$t" small/)" -ge "$small" ]; do
        (($(echo "$(now) > $deadline" | bc -l))) && { echo "n/a"; return; }
        sleep 0.2
      done
      ;;
  esac
  printf '%.2f' "$(elapsed "$start")"
}

declare -A big smallt
for t in "${tools[@]}"; do
  echo "== $t" >&2
  mount_tool "$t"
  big[$t]=$(big_job "$t")
  echo "   1 file of $file_mib MiB: ${big[$t]} s" >&2
  mount_tool "$t"
  smallt[$t]=$(small_job "$t")
  echo "   $small files of 4 KiB: ${smallt[$t]} s" >&2
  if [[ $t == lakefs-fuse* ]]; then
    n=$(count_objects "$t" small/)
    [ "$n" = "$small" ] || echo "   WARNING: $t's branch shows $n of $small small files after the commit" >&2
  fi
  fusermount3 -u "$work/mnt/$t"
done

unique_content sdk
cat "$work/file" >/dev/null
sync
start=$(now)
"$sdk" "$ep" bench sdk/big.bin "$work/file" 8 put >/dev/null
sdk_secs=$(printf '%.2f' "$(elapsed "$start")")

mibs() { [[ $1 == n/a ]] && echo n/a || printf '%.1f' "$(echo "$file_mib / $1" | bc -l)"; }
ratio() { [[ $1 == n/a || $2 == n/a ]] && echo n/a || printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
best_peer() { # ASSOC-NAME -> smallest peer time, or n/a
  local -n times=$1
  local p best
  best=$(for p in "${peers[@]}"; do echo "${times[$p]}"; done | grep -v n/a | sort -g | head -1)
  echo "${best:-n/a}"
}
bp_big=$(best_peer big)
bp_small=$(best_peer smallt)

cols=""
for t in "${tools[@]}"; do cols+=" $t |"; done
echo "| job |$cols"
echo "|---|$(printf '%0.s---|' "${tools[@]}")"
row="| 1 file of ${file_mib} MiB, dd bs=1M conv=fsync, until on the server, s |"
for t in "${tools[@]}"; do row+=" ${big[$t]} |"; done
echo "$row"
row="| same, MiB/s |"
for t in "${tools[@]}"; do row+=" $(mibs "${big[$t]}") |"; done
echo "$row"
row="| $small files of 4 KiB (lakefs-fuse: + commit), s |"
for t in "${tools[@]}"; do row+=" ${smallt[$t]} |"; done
echo "$row"
echo
echo "aws-sdk-s3 multipart upload of the same file (8 MiB parts, 8 in flight): ${sdk_secs} s, $(mibs "$sdk_secs") MiB/s"
for t in "${tools[@]}"; do
  [[ $t == lakefs-fuse* ]] || continue
  echo "$t: 1 GiB write = $(ratio "$bp_big" "${big[$t]}")x the fastest peer's speed (target >= 1)," \
    "$(ratio "$sdk_secs" "${big[$t]}")x the direct multipart upload's (target >= 0.70);" \
    "small files + commit = $(ratio "$bp_small" "${smallt[$t]}")x the fastest peer's write speed (target > 1)"
done
