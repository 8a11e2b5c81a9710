#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what it needs, then
#   1. cargo fmt/clippy checks,
#   2. Rust unit and integration tests, including real FUSE mounts (feature fuse_tests) and the fault tests of
#      tests/faults.rs (server and mount killed, full staging disk, server fault mode; long forms with
#      LAKEFS_FUSE_LONG_TESTS=1, see docs/RELIABILITY.md),
#   3. the compat suite: the official lakeFS clients (lakefs-sdk, lakefs, lakefs-spec, boto3, aws CLI)
#      against `lakefs-fuse serve`,
#   4. the Debian package: build, install, `mount -t lakefs`, an fstab mount, removal (needs root and dpkg),
#   5. POSIX conformance of a mounted branch: pjdfstest against the ratchet file scripts/conformance/pjdfstest.expected
#      and fsx (100,000 operations, then the committed file re-read from a fresh mount); needs root and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh python

echo "== cargo fmt / clippy"
cargo fmt --check
cargo clippy --all-targets --features fuse_tests -q -- -D warnings

echo "== cargo test"
fuse_feature=(--features fuse_tests)
if [ ! -e /dev/fuse ]; then
  echo "warning: /dev/fuse is missing; mount tests are skipped" >&2
  fuse_feature=()
fi
cargo test "${fuse_feature[@]}"

echo "== compat suite (official lakeFS clients)"
cargo build -q
LAKEFS_FUSE_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/lakefs-fuse" .venv/bin/python -m pytest -q scripts/conformance/python

echo "== Debian package: install, mount -t lakefs, fstab, remove"
scripts/test_deb.sh

echo "== conformance: pjdfstest and fsx on a mounted branch"
if [ -e /dev/fuse ] && [ "$(id -u)" = 0 ]; then
  # The release build the package step made: fsx's 100,000 operations take several times longer in debug.
  export CONF_PROFILE=release
  scripts/conformance/pjdfstest.sh
  scripts/conformance/fsx.sh 100000
else
  echo "warning: conformance needs root and /dev/fuse; skipped" >&2
fi
