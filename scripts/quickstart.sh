#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build release, build the
# default distro (`build-distro build`, the built-in debian-trixie recipe), then check it
# and boot it the way the platform would.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --release --locked
bin=target/release/build-distro

"$bin" build --out dist
archive=dist/debian-trixie.tar.gz

echo
"$bin" check "$archive"
echo
"$bin" boot "$archive"

echo
echo "quickstart: your distro is $archive"
echo "            manifest dist/debian-trixie.manifest, build report dist/debian-trixie.json"
