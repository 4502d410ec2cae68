#!/usr/bin/env bash
# Every test: install what is missing, start what the tests need (dockerd when none
# answers), run the whole suite, stop what we started. Exits non-zero when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

. scripts/dockerd.sh
trap own_dockerd_stop EXIT
if [ "$(id -u)" = 0 ] && ! docker version >/dev/null 2>&1; then
  own_dockerd_start "$(mktemp -d /tmp/build-distro-dockerd.XXXXXX)"
fi

cargo build --locked --tests
cargo test --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-2}"
