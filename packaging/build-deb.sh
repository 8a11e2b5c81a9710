#!/usr/bin/env bash
# Build the Debian package: release binary, man pages and shell completions generated from the
# binary itself, then `cargo deb --no-build`. Prints the path of the .deb on its last line.
# Needs cargo-deb (`cargo install cargo-deb`). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
command -v cargo-deb >/dev/null || { echo "cargo-deb is missing: cargo install cargo-deb" >&2; exit 1; }

cargo build --release --bin lakefs-fuse >&2
rm -rf "$target/release/generated"
"$target/release/lakefs-fuse" generate man "$target/release/generated/man"
"$target/release/lakefs-fuse" generate completions "$target/release/generated/completions"
cargo deb --no-build --output "$target/debian/" >&2
ls -t "$target"/debian/lakefs-fuse_*.deb | head -n 1
