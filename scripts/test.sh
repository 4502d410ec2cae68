#!/usr/bin/env bash
# Every test: install what is missing, start what the tests need (dockerd when none
# answers), run the whole suite, stop what we started. Exits non-zero when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

started_dockerd=""
dockerd_dir=""
cleanup() {
  if [ -n "$started_dockerd" ]; then
    kill "$started_dockerd" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$started_dockerd" 2>/dev/null || true
    # vfs layers of the test images; mounts first, so removal never crosses into them.
    grep -o " $dockerd_dir[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$dockerd_dir"
  fi
}
trap cleanup EXIT

if [ "$(id -u)" = 0 ] && ! docker version >/dev/null 2>&1; then
  dockerd_dir=$(mktemp -d /tmp/build-distro-dockerd.XXXXXX)
  dockerd --data-root "$dockerd_dir/data" --exec-root "$dockerd_dir/exec" \
    --pidfile "$dockerd_dir/dockerd.pid" --host "unix://$dockerd_dir/docker.sock" \
    --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
    >"$dockerd_dir/dockerd.log" 2>&1 &
  started_dockerd=$!
  export DOCKER_HOST="unix://$dockerd_dir/docker.sock"
  for _ in $(seq 1 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
  docker version >/dev/null 2>&1 || { echo "test.sh: dockerd did not start:"; tail -n 20 "$dockerd_dir/dockerd.log"; exit 1; }
fi

cargo build --locked --tests
cargo test --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-2}"
