#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build release, build the
# default distro, then check it and boot it the way the platform would.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --release --locked
bin=target/release/build-distro

"$bin" build --out dist
archive=$(ls -t dist/*.tar.gz | head -n 1)

if "$bin" check --help >/dev/null 2>&1 && "$bin" check "$archive"; then
  echo "quickstart: check passed"
fi
if "$bin" boot --help >/dev/null 2>&1; then
  "$bin" boot "$archive"
fi

echo
echo "quickstart: your distro is $archive"
echo "            manifest ${archive%.tar.gz}.manifest, build report ${archive%.tar.gz}.json"
