#!/usr/bin/env bash
# POSIX conformance of a mounted branch: runs pjdfstest (the Rust rewrite, `cargo install pjdfstest`) as root in
# a freshly mounted branch of `lakefs-fuse serve` and compares the per-case results with the ratchet file
# pjdfstest.expected beside this script (see ratchet.py): a case expected to pass that fails now fails this
# script; a newly passing case rewrites the file (commit it).
#   scripts/conformance/pjdfstest.sh [PATTERN...]   (patterns select cases, as pjdfstest's own; no ratchet then)
#   PJDFSTEST_ACCEPT=1 scripts/conformance/pjdfstest.sh   rewrite the expected file with this run's results
set -euo pipefail
cd "$(dirname "$0")/../.."
here=scripts/conformance
source "$here/lib.sh"

[ "$(id -u)" = 0 ] || { echo "pjdfstest.sh: needs root (pjdfstest switches users)" >&2; exit 1; }
conf_apt fuse3 libacl1-dev acl curl python3
conf_install_tool pjdfstest 0.2.2
# pjdfstest switches to two dummy users, each with a group of its own.
getent group tests >/dev/null || groupadd --system tests
getent passwd tests >/dev/null || useradd --system --gid tests --no-create-home --shell /usr/sbin/nologin tests

conf_start conformance
mnt=$CONF_WORK/mnt
conf_mount conformance main "$mnt"

cat >"$CONF_WORK/pjdfstest.toml" <<'EOF'
# Optional features the mount claims: utimensat(2) and UTIME_NOW. Not claimed: posix_fallocate, file flags,
# NFSv4 ACLs, birth time, ctime changes on rename, a second filesystem for EXDEV, a read-only remount.
[features]
utimensat = {}
utime_now = {}

[settings]
# mtimes are stored in whole seconds (::lakefs::client-mtime), so the sleeps between two timestamp checks must
# cross a second.
naptime = 1.1
allow_remount = false

[dummy_auth]
entries = [
  ["nobody", "nogroup"],
  ["tests", "tests"],
]
EOF

start=$(date +%s)
set +e
NO_COLOR=1 "$CONF_TOOLS/bin/pjdfstest" -c "$CONF_WORK/pjdfstest.toml" -p "$mnt/" "$@" >"$CONF_WORK/pjdfstest.out" 2>&1
status=$?
set -e
echo "pjdfstest: exit $status after $(($(date +%s) - start)) s" >&2
# "NAME   ok|FAILED|skipped" lines (plus indented detail lines, which carry the failure message)
sed -E 's/\x1b\[[0-9;]*m//g' "$CONF_WORK/pjdfstest.out" >"$CONF_WORK/pjdfstest.log"
awk '/^[A-Za-z_][A-Za-z0-9_:]* +(ok|FAILED|skipped)$/ { print $1, ($2 == "ok" ? "pass" : ($2 == "skipped" ? "skip" : "fail")) }' \
  "$CONF_WORK/pjdfstest.log" >"$CONF_WORK/results"
if [ -n "${PJDFSTEST_LOG:-}" ]; then cp "$CONF_WORK/pjdfstest.log" "$PJDFSTEST_LOG"; fi
grep -E '^Summary' "$CONF_WORK/pjdfstest.log" || true
if [ $# -gt 0 ]; then
  grep -v ' ok$' "$CONF_WORK/pjdfstest.log" | head -n 200
  exit 0
fi
if ! python3 "$here/ratchet.py" ${PJDFSTEST_ACCEPT:+--accept} "$here/pjdfstest.expected" "$CONF_WORK/results"; then
  echo "pjdfstest: failure details:" >&2
  grep -A3 -E ' FAILED$' "$CONF_WORK/pjdfstest.log" | head -n 100 >&2
  exit 1
fi
