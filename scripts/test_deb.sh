#!/usr/bin/env bash
# End-to-end test of the Debian package: build it, install it with apt-get, serve a repository with the
# installed binary, mount it through mount(8) (`mount -t lakefs`, then an /etc/fstab line), check the man pages,
# remove the package and check it left nothing behind.
#
#   scripts/test_deb.sh
#
# Needs root (or passwordless sudo): it installs a package, mounts, and edits /etc/fstab (restored on exit).
# Prints "skipped: no dpkg" and exits 0 on systems without dpkg. Mount checks need /dev/fuse; without it they
# are skipped with a warning and the packaging checks still run. Whatever happens, the exit trap unmounts,
# stops the server, restores /etc/fstab and removes the package it installed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dpkg >/dev/null 2>&1; then
  echo "skipped: no dpkg"
  exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then sudo=(sudo -n); else
    echo "test_deb: needs root (or passwordless sudo) to install the package and mount" >&2
    exit 1
  fi
fi

keys_id=AKIAIOSFOLQUICKSTART
keys_secret=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
work=$(mktemp -d /tmp/lakefs-fuse-deb.XXXXXX)
mnt=$work/mnt
server_pid=
installed=
fstab_backup=

step() { echo "== test_deb: $*"; }
fail() { echo "test_deb: FAILED: $*" >&2; exit 1; }

cleanup() {
  local status=$?
  set +e
  if mountpoint -q "$mnt" 2>/dev/null; then "${sudo[@]}" umount "$mnt" || "${sudo[@]}" umount -l "$mnt"; fi
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  if [ -n "$fstab_backup" ]; then "${sudo[@]}" cp "$fstab_backup" /etc/fstab; fi
  if [ -n "$installed" ] && dpkg -s lakefs-fuse >/dev/null 2>&1; then
    "${sudo[@]}" apt-get purge -y -qq lakefs-fuse >/dev/null
  fi
  if [ "$status" != 0 ]; then
    for log in "$work"/*.log; do [ -f "$log" ] && { echo "--- $log"; tail -n 30 "$log"; }; done >&2
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "build the package"
if ! command -v cargo-deb >/dev/null 2>&1; then
  cargo install cargo-deb --locked
fi
deb=$(packaging/build-deb.sh | tail -n 1)
[ -f "$deb" ] || fail "no package built"
deb=$(realpath "$deb")
echo "$deb"
# (Whole outputs are captured before grep -q: with pipefail, a writer cut off by grep's early exit fails.)
contents=$(dpkg-deb --contents "$deb")
grep -q ' ./usr/sbin/mount.lakefs -> ../bin/lakefs-fuse$' <<<"$contents" || fail "the package has no mount.lakefs symlink"

step "install it"
if ! command -v man >/dev/null 2>&1; then "${sudo[@]}" apt-get install -y -qq man-db >/dev/null; fi
installed=1
"${sudo[@]}" apt-get install -y -qq "$deb" >/dev/null
[ -x /usr/bin/lakefs-fuse ] || fail "/usr/bin/lakefs-fuse missing"
[ "$(readlink -f /sbin/mount.lakefs)" = /usr/bin/lakefs-fuse ] || fail "/sbin/mount.lakefs does not lead to lakefs-fuse"
[ -f /etc/lakefs-fuse/lakectl.yaml.example ] || fail "example config missing"
[ -f /usr/lib/systemd/system/lakefs-fuse@.service ] || fail "systemd unit missing"
[ -f /usr/share/bash-completion/completions/lakefs-fuse ] || fail "bash completion missing"

step "man pages"
man -w lakefs-fuse
man -w mount.lakefs
man -w lakefs-fuse-mount
page=$(man -P cat mount.lakefs 2>/dev/null)
grep -q "FSTAB" <<<"$page" || fail "man mount.lakefs does not render"

step "mount helper flags"
# -f is the helper's "fake": nothing is mounted, exit 0, even before any server exists.
mkdir -p "$mnt"
"${sudo[@]}" /sbin/mount.lakefs lakefs://repo/main "$mnt" -s -f -n -v -o rw,noauto,_netdev,nofail,x-systemd.automount
mountpoint -q "$mnt" && fail "mount.lakefs -f mounted something"
if "${sudo[@]}" /sbin/mount.lakefs lakefs://repo/main "$mnt" -f -o no_such_option 2>/dev/null; then
  fail "mount.lakefs -f accepted an unknown option"
fi

if [ ! -e /dev/fuse ]; then
  echo "warning: /dev/fuse is missing; mount checks skipped" >&2
else
  step "serve a repository with the installed binary"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  endpoint=http://127.0.0.1:$port
  /usr/bin/lakefs-fuse serve --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do curl -sf "$endpoint/_health" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -sf "$endpoint/_health" >/dev/null || fail "server did not start"
  api=(curl -sSf -u "$keys_id:$keys_secret")
  "${api[@]}" -X POST -H 'Content-Type: application/json' "$endpoint/api/v1/repositories" \
    -d '{"name": "repo", "storage_namespace": "local://repo", "default_branch": "main"}' >/dev/null
  "${api[@]}" -X POST -H 'Content-Type: application/octet-stream' --data-binary 'hello from lakeFS' \
    "$endpoint/api/v1/repositories/repo/branches/main/objects?path=dir/hello.txt" >/dev/null
  "${api[@]}" -X POST -H 'Content-Type: application/json' -d '{"message": "hello"}' \
    "$endpoint/api/v1/repositories/repo/branches/main/commits" >/dev/null

  config=$work/lakectl.yaml
  (umask 077 && cat >"$config" <<EOF
credentials:
  access_key_id: $keys_id
  secret_access_key: $keys_secret
server:
  endpoint_url: $endpoint
EOF
  )

  wait_unmounted() {
    for _ in $(seq 50); do mountpoint -q "$mnt" || return 0; sleep 0.1; done
    fail "$mnt still mounted"
  }

  step "a config file others can read is refused"
  chmod 644 "$config"
  if out=$("${sudo[@]}" mount -t lakefs lakefs://repo/main "$mnt" -o "config=$config" 2>&1); then
    fail "mounted with a world-readable secret"
  fi
  grep -q "chmod 600" <<<"$out" || fail "unclear message for a world-readable config: $out"
  mountpoint -q "$mnt" && fail "mounted despite the error"
  chmod 600 "$config"

  step "mount -t lakefs"
  "${sudo[@]}" mount -t lakefs lakefs://repo/main "$mnt" -o "config=$config,log_file=$work/mount.log"
  mountpoint -q "$mnt" || fail "mount returned but $mnt is not a mountpoint"
  [ "$(cat "$mnt/dir/hello.txt")" = "hello from lakeFS" ] || fail "wrong content through mount -t lakefs"
  grep -q mounted "$work/mount.log" || fail "log_file has no 'mounted' line"
  "${sudo[@]}" umount "$mnt"
  wait_unmounted

  step "mount -t lakefs -o ro"
  "${sudo[@]}" mount -t lakefs lakefs://repo/main "$mnt" -o "ro,config=$config"
  [ "$(cat "$mnt/dir/hello.txt")" = "hello from lakeFS" ] || fail "wrong content through the ro mount"
  if (echo nope >"$mnt/new.txt") 2>/dev/null; then fail "wrote through a read-only mount"; fi
  "${sudo[@]}" umount "$mnt"
  wait_unmounted

  step "an /etc/fstab line"
  fstab_backup=$work/fstab.backup
  "${sudo[@]}" cp /etc/fstab "$fstab_backup"
  echo "lakefs://repo/main $mnt lakefs noauto,_netdev,nofail,config=$config 0 0" | "${sudo[@]}" tee -a /etc/fstab >/dev/null
  "${sudo[@]}" mount "$mnt"
  [ "$(cat "$mnt/dir/hello.txt")" = "hello from lakeFS" ] || fail "wrong content through the fstab mount"
  "${sudo[@]}" umount "$mnt"
  wait_unmounted
  "${sudo[@]}" cp "$fstab_backup" /etc/fstab
  fstab_backup=
fi

step "remove the package"
"${sudo[@]}" apt-get remove -y -qq lakefs-fuse >/dev/null
installed=
[ -e /sbin/mount.lakefs ] || [ -L /sbin/mount.lakefs ] && fail "/sbin/mount.lakefs is still there"
[ -e /usr/bin/lakefs-fuse ] && fail "/usr/bin/lakefs-fuse is still there"
man -w mount.lakefs >/dev/null 2>&1 && fail "man mount.lakefs still found"
"${sudo[@]}" apt-get purge -y -qq lakefs-fuse >/dev/null
[ -e /etc/lakefs-fuse ] && fail "/etc/lakefs-fuse is still there after purge"
echo "test_deb: ok"
