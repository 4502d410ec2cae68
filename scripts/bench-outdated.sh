#!/usr/bin/env bash
# Time and peak memory of `build-distro outdated` with the mirror indexes cached (a first
# run warms the cache; the InRelease files are fetched and verified every time, as in real
# use).
#   bash scripts/bench-outdated.sh [BIN [WORK [cves]]]      (alone, or called by bench.sh)
# Default: the default distro tarball; goal under 5 s and under 100 MB. Prints one line:
# `outdated SECONDS PEAK_RSS_KB TARBALL`.
# `cves`: a stale bookworm tarball (the release suite only, so security updates are
# pending), `outdated --no-fixes` (the plain check) against `outdated` reading the CVE IDs
# with no changelog cached (every changelog fetched); goal under 2x the plain check.
# Prints `outdated-cves PLAIN_SECONDS CVE_SECONDS CVE_PEAK_RSS_KB TARBALL`.
# Needs root (the build) and deb.debian.org.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-$PWD/target/release/build-distro}
work=${2:-/var/tmp/bd-bench-outdated}
mode=${3:-default}
REPS=${REPS:-3}
. scripts/bench-lib.sh
[ -x "$bin" ] || { cargo build --release --locked >&2; bin=$PWD/target/release/build-distro; }
mkdir -p "$work/$mode"
tgz=$(ls "$work/$mode"/*.tar.gz 2>/dev/null | head -n 1 || true)
if [ -z "$tgz" ]; then
  if [ "$mode" = cves ]; then
    cat >"$work/stale.toml" <<'EOF'
[distro]
name = "bench-stale-bookworm"
[source]
type = "mmdebstrap"
suite = "bookworm"
variant = "minbase"
updates = false
security = false
packages = ["net-tools", "ca-certificates", "uwsgi-core", "uwsgi-plugin-python3"]
EOF
    "$bin" -q build "$work/stale.toml" --out "$work/$mode" >/dev/null
  else
    "$bin" -q build --out "$work/$mode" >/dev/null
  fi
  tgz=$(ls "$work/$mode"/*.tar.gz | head -n 1)
fi
export BUILD_DISTRO_CACHE_DIR="$work/cache"

if [ "$mode" = cves ]; then
  best "'$bin' -q outdated '$tgz' --json --no-fixes >/dev/null"
  plain=$best
  best "'$bin' -q outdated '$tgz' --json >/dev/null" "rm -f '$work/cache/indexes/'*.changelog.gz"
  echo "outdated-cves $plain $best $rss $tgz"
else
  best "'$bin' -q outdated '$tgz' --json >/dev/null"
  echo "outdated $best $rss $tgz"
fi
