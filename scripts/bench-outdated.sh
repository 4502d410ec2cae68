#!/usr/bin/env bash
# Time and peak memory of `build-distro outdated` on the default distro tarball, with the
# mirror indexes cached (a first run warms the cache; the InRelease files are fetched and
# verified every time, as in real use). Goal: under 5 s and under 100 MB.
#   bash scripts/bench-outdated.sh [BIN [WORK]]      (alone, or called by bench.sh)
# Prints one line: `outdated SECONDS PEAK_RSS_KB TARBALL`. Needs root (the build) and
# deb.debian.org.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-$PWD/target/release/build-distro}
work=${2:-/var/tmp/bd-bench-outdated}
REPS=${REPS:-3}
[ -x "$bin" ] || { cargo build --release --locked >&2; bin=$PWD/target/release/build-distro; }
mkdir -p "$work/default"
tgz=$(ls "$work"/default/*.tar.gz 2>/dev/null | head -n 1 || true)
if [ -z "$tgz" ]; then
  "$bin" -q build --out "$work/default" >/dev/null
  tgz=$(ls "$work"/default/*.tar.gz | head -n 1)
fi
export BUILD_DISTRO_CACHE_DIR="$work/cache"
# Exit 1 only says security updates are pending: a result, not a failure.
cmd="'$bin' -q outdated '$tgz' --json >/dev/null || [ \$? -eq 1 ]"
bash -c "$cmd"
best="" rss=""
for _ in $(seq 1 "$REPS"); do
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  /usr/bin/time -v -o "$work/time.txt" bash -c "$cmd"
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.txt")
  kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
  if [ -z "$best" ] || awk "BEGIN{exit !($wall < $best)}"; then best=$wall; rss=$kb; fi
done
echo "outdated $best $rss $tgz"
