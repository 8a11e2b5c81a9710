#!/usr/bin/env bash
# Installs what building, running and testing lakefs-fuse needs on a fresh Debian machine. Idempotent:
# each step is skipped when its tool is already there. Used by quickstart.sh and test.sh.
#   scripts/setup.sh          system packages (fuse3) and the Rust build
#   scripts/setup.sh python       also the Python venv with the official lakeFS clients (.venv/)
#   scripts/setup.sh quickstart   also pyarrow in that venv, for the quickstart's Parquet sample data
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v fusermount3 >/dev/null || need_apt+=(fuse3)
command -v python3 >/dev/null || need_apt+=(python3 python3-venv)
# Debian ships the venv module (ensurepip) separately from python3.
if command -v python3 >/dev/null && ! python3 -c 'import ensurepip' 2>/dev/null; then need_apt+=(python3-venv); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust from rustup or your distribution" >&2; exit 1; }

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
  fi
}

case "${1:-}" in
  python)
    if ! .venv/bin/python -c 'import lakefs, lakefs_sdk, lakefs_spec, boto3, pytest' 2>/dev/null; then
      ensure_venv
      echo "setup: installing the official lakeFS clients into .venv"
      .venv/bin/pip install -q -r scripts/conformance/python/requirements.txt
    fi
    ;;
  quickstart)
    if ! .venv/bin/python -c 'import pyarrow' 2>/dev/null; then
      ensure_venv
      echo "setup: installing pyarrow into .venv (Parquet sample data)"
      .venv/bin/pip install -q 'pyarrow>=14'
    fi
    ;;
esac
