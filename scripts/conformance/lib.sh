# Shared by pjdfstest.sh and fsx.sh (source it): installs the conformance tools, starts `lakefs-fuse serve` on a
# free loopback port with a temporary data dir, mounts one branch of a fresh repository, and tears everything down
# on exit (unmount first, then the server, then the temporary dir), whether the run passed or not.
#
#   conf_install_tool CRATE      cargo install CRATE into $CONF_TOOLS (reused when its binary is there)
#   conf_start REPO              build lakefs-fuse ($CONF_PROFILE: debug, or release as test.sh uses once the
#                                package step has built it), start the server, create REPO; sets CONF_WORK, CONF_EP
#   conf_mount REPO BRANCH MNT [-o OPTS]   mount in the foreground (background job), wait until it is live
#   conf_unmount MNT             unmount and wait for the mount process to exit
# Every function needs root for the mount (allow_other) and the dummy users of pjdfstest.

CONF_TOOLS=${CONF_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/lakefs-fuse/tools}
CONF_TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")
CONF_PROFILE=${CONF_PROFILE:-debug}
CONF_BIN=$CONF_TARGET/$CONF_PROFILE/lakefs-fuse
CONF_WORK=
CONF_EP=
conf_server_pid=
declare -A conf_mount_pids=()

export AWS_ACCESS_KEY_ID=AKIAIOSFOLQUICKSTART AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY

conf_as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

conf_apt() { # conf_apt PACKAGE... : install the Debian packages that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "conformance: installing ${missing[*]}" >&2
  conf_as_root apt-get update -qq
  conf_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

conf_install_tool() { # conf_install_tool CRATE [VERSION]
  local crate=$1 version=${2:-}
  [ -x "$CONF_TOOLS/bin/$crate" ] && return 0
  echo "conformance: cargo install $crate${version:+ $version} into $CONF_TOOLS" >&2
  # A target dir of its own: the tool's dependencies must not disturb the project's build cache. The tool's own
  # lock file first (the versions it was released with); if that no longer resolves, the newest compatible ones.
  CARGO_TARGET_DIR="$CONF_TOOLS/build" cargo install -q --locked --root "$CONF_TOOLS" \
    ${version:+--version "$version"} "$crate" ||
    CARGO_TARGET_DIR="$CONF_TOOLS/build" cargo install -q --root "$CONF_TOOLS" ${version:+--version "$version"} "$crate"
  rm -rf "$CONF_TOOLS/build"
}

conf_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

conf_cleanup() {
  local mnt
  for mnt in "${!conf_mount_pids[@]}"; do conf_unmount "$mnt" || true; done
  if [ -n "$conf_server_pid" ]; then
    kill "$conf_server_pid" 2>/dev/null || true
    wait "$conf_server_pid" 2>/dev/null || true
  fi
  [ -n "$CONF_WORK" ] && [ -z "${CONF_KEEP:-}" ] && rm -rf "$CONF_WORK"
  return 0
}

conf_start() { # conf_start REPO
  local repo=$1 port
  if [ "$CONF_PROFILE" = release ]; then cargo build -q --release --bin lakefs-fuse; else cargo build -q --bin lakefs-fuse; fi
  CONF_WORK=$(mktemp -d /tmp/lakefs-conformance.XXXXXX)
  chmod 755 "$CONF_WORK"
  trap conf_cleanup EXIT
  port=$(conf_free_port)
  CONF_EP=http://127.0.0.1:$port
  "$CONF_BIN" serve --data-dir "$CONF_WORK/data" --listen "127.0.0.1:$port" >"$CONF_WORK/server.log" 2>&1 &
  conf_server_pid=$!
  for _ in $(seq 200); do curl -sf "$CONF_EP/_health" >/dev/null && break; sleep 0.1; done
  curl -sf -u "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H 'Content-Type: application/json' \
    -d "{\"name\":\"$repo\",\"storage_namespace\":\"local://$repo\"}" "$CONF_EP/api/v1/repositories" >/dev/null
  export LAKECTL_SERVER_ENDPOINT_URL=$CONF_EP LAKECTL_CREDENTIALS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID \
    LAKECTL_CREDENTIALS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
}

conf_mount() { # conf_mount REPO BRANCH MNT [EXTRA_OPTIONS]
  local repo=$1 branch=$2 mnt=$3 extra=${4:-}
  mkdir -p "$mnt"
  "$CONF_BIN" mount "lakefs://$repo/$branch" "$mnt" -f \
    -o "allow_other,cache_dir=$CONF_WORK/cache${extra:+,$extra}" >>"$CONF_WORK/mount.log" 2>&1 &
  conf_mount_pids[$mnt]=$!
  for _ in $(seq 300); do
    mountpoint -q "$mnt" && return 0
    kill -0 "${conf_mount_pids[$mnt]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "conformance: mount of $repo/$branch at $mnt failed; log:" >&2
  tail -n 20 "$CONF_WORK/mount.log" >&2
  return 1
}

conf_unmount() { # conf_unmount MNT
  local mnt=$1 pid=${conf_mount_pids[$1]:-}
  if mountpoint -q "$mnt"; then
    fusermount3 -u "$mnt" 2>/dev/null || { sleep 1; fusermount3 -u "$mnt" 2>/dev/null; } ||
      fusermount3 -uz "$mnt" 2>/dev/null || true
  fi
  if [ -n "$pid" ]; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  unset "conf_mount_pids[$mnt]"
}
