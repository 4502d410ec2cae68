#!/usr/bin/env bash
# Speed and memory of build-distro next to what users would otherwise run:
#   docker export | gzip -6, docker export | pigz -6, tar -czf, a full upload vs rsync,
#   and without any daemon: skopeo copy + umoci unpack + tar | pigz from a registry.
# Builds its own inputs (a ~300 MB image from a real Debian tree, its `docker save`
# archive, the extracted tree), runs each case REPS times, and prints a table plus
# target/bench-results.json (BENCH_OUT=FILE elsewhere), never in the work tree. Needs root and a Docker engine (started here when none answers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

REPS=${REPS:-3}
OUT=${BENCH_OUT:-target/bench-results.json}
mkdir -p "$(dirname "$OUT")"
# BENCH_WORK=DIR keeps the inputs there between runs (built once, reused while iterating).
if [ -n "${BENCH_WORK:-}" ]; then
  work=$BENCH_WORK; mkdir -p "$work"; keep_work=1
else
  work=$(mktemp -d /var/tmp/bd-bench.XXXXXX); keep_work=""
fi
. scripts/dockerd.sh
registry_pid=""
cleanup() {
  [ -z "$registry_pid" ] || { kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true; }
  docker rm -f bd-bench-ctr >/dev/null 2>&1 || true
  own_dockerd_stop
  if [ -n "$keep_work" ]; then rm -rf "$work/o" "$work/r1" "$work/r2"; else rm -rf "$work"; fi
}
trap cleanup EXIT

cargo build --release --locked
bin=$PWD/target/release/build-distro

results="$work/results.tsv"
: >"$results"
# run NAME OUTPUT-FILE COMMAND: REPS runs; records the best wall time, its peak RSS, output size.
run() {
  local name=$1 output=$2; shift 2
  local best="" rss="" size=0
  for _ in $(seq 1 "$REPS"); do
    rm -rf "$work/o" && mkdir -p "$work/o"
    sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    /usr/bin/time -v -o "$work/time.txt" bash -c "$*" >/dev/null 2>"$work/err.txt" || {
      echo "bench: $name failed:"; tail -n 5 "$work/err.txt"; echo -e "$name\tfailed\t\t\t" >>"$results"; return 0; }
    local wall kb
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.txt")
    kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
    if [ -z "$best" ] || awk "BEGIN{exit !($wall < $best)}"; then best=$wall; rss=$kb; fi
    size=$(stat -c %s "$output" 2>/dev/null || echo 0)
  done
  local mbs
  mbs=$(awk "BEGIN{printf \"%.1f\", ${input_bytes:-0}/1048576/$best}")
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$best" "$mbs" "$size" "$rss" >>"$results"
  printf '  %-44s %7.2fs %8s MB/s %12s bytes %8s KB RSS\n' "$name" "$best" "$mbs" "$size" "$rss"
}

# The build cache (issue 18) on the default recipe: a cold build (empty cache each run), a
# warm rebuild, and a change to [[files]] only; goals: warm <= 10% and files-only <= 20%
# of cold. Issue 25 adds: plain mmdebstrap with the recipe's suites and packages (goal:
# cold <= 0.9x of it); a security rebuild (goal <= 40% of cold, 25% hoped): a new
# -security InRelease changes the key of the whole tree, which is a layer entry (the
# upgrade from -updates and -security) over the entry of the release alone, whose key
# names only the release's own InRelease and so still matches. Removing the layer
# entries leaves the cache exactly as that InRelease would (drop_layers); the rebuild
# mounts the first step and runs only the upgrade, downloading its packages. The same
# without [slim] (its own first step made beforehand, untimed), and the content size
# with and without it. Its own mirror state: the rows run back to back.
# drop_layers CACHE: remove the layer entries (key.json names a base), keep the rest.
drop_layers() {
  local k
  for k in "$1"/entries/*/key.json; do
    [ -e "$k" ] || continue
    if jq -e '.base' "$k" >/dev/null; then rm -rf "$(dirname "$k")"; fi
  done
}

cache_rows() {
  local bc="$work/bcache"
  printf 'extends = "debian-trixie"\n[[files]]\npath = "/etc/motd"\ncontent = "bench\\n"\n' >"$work/files.toml"
  run "build (default recipe, cold cache)" "$work/o/debian-trixie.tar.gz" "rm -rf $bc && BUILD_DISTRO_CACHE_DIR=$bc $bin -q build --out $work/o"
  slim_bytes=$(jq .bytes "$work/o/debian-trixie.json")
  # What the default recipe's [source] asks of mmdebstrap, read from the recipe itself.
  local suite variant packages
  read -r suite variant packages < <(python3 -c 'import sys, tomllib; s = tomllib.load(open(sys.argv[1], "rb"))["source"]; print(s["suite"], s["variant"], ",".join(s["packages"]))' recipes/debian-trixie.toml)
  run "mmdebstrap (same suites and packages)" "$work/o/mm.tar.gz" "mmdebstrap --variant=$variant --include=$packages --mode=root $suite $work/o/mm.tar.gz 'deb http://deb.debian.org/debian $suite main' 'deb http://deb.debian.org/debian $suite-updates main' 'deb http://deb.debian.org/debian-security $suite-security main'"
  run "build (default recipe, warm cache)" "$work/o/debian-trixie.tar.gz" "BUILD_DISTRO_CACHE_DIR=$bc $bin -q build --out $work/o"
  run "build ([[files]] changed, warm cache)" "$work/o/debian-trixie.tar.gz" "BUILD_DISTRO_CACHE_DIR=$bc $bin -q build $work/files.toml --out $work/o"
  export -f drop_layers
  run "build (security rebuild, first step cached)" "$work/o/debian-trixie.tar.gz" "drop_layers $bc && BUILD_DISTRO_CACHE_DIR=$bc $bin -q build --out $work/o"
  BUILD_DISTRO_CACHE_DIR=$bc $bin -q build --set slim.enabled=false --out "$work/o" >/dev/null
  run "build (security rebuild, slim off)" "$work/o/debian-trixie.tar.gz" "drop_layers $bc && BUILD_DISTRO_CACHE_DIR=$bc $bin -q build --set slim.enabled=false --out $work/o"
  full_bytes=$(jq .bytes "$work/o/debian-trixie.json")
  echo "  content: $slim_bytes bytes slim, $full_bytes bytes with slim off"
  cache_bytes=$(du -sb "$bc" | cut -f1)
  echo "  build cache size: $cache_bytes bytes"
}

cache_summary() {
  python3 - "$results" "$OUT" "${cache_bytes:-0}" "${slim_bytes:-0}" "${full_bytes:-0}" <<'PY'
import json, sys
res, out, cache_bytes, slim_bytes, full_bytes = sys.argv[1:6]
by = {}
for line in open(res):
    f = line.rstrip("\n").split("\t")
    if f[1] != "failed":
        by[f[0]] = {"case": f[0], "seconds": float(f[1]), "output_bytes": int(f[3]), "peak_rss_kb": int(f[4])}
cold = by.get("build (default recipe, cold cache)")
s = {}
if cold:
    for k, name in [("warm", "build (default recipe, warm cache)"), ("files-only", "build ([[files]] changed, warm cache)"),
                    ("security rebuild (goal <= 0.4)", "build (security rebuild, first step cached)"),
                    ("security rebuild, slim off", "build (security rebuild, slim off)")]:
        if name in by:
            s[f"cache: {k} / cold"] = round(by[name]["seconds"] / cold["seconds"], 3)
    mm = by.get("mmdebstrap (same suites and packages)")
    if mm:
        s["cold build / plain mmdebstrap (goal <= 0.9)"] = round(cold["seconds"] / mm["seconds"], 3)
s["cache: bytes"] = int(cache_bytes)
if int(slim_bytes) and int(full_bytes):
    mib = lambda b: round(int(b) / 1048576, 1)
    s["slim: content MiB (slim, full, saved)"] = [mib(slim_bytes), mib(full_bytes), mib(int(full_bytes) - int(slim_bytes))]
try:
    doc = json.load(open(out))
except Exception:
    doc = {"results": list(by.values())}
doc.setdefault("summary", {}).update(s)
json.dump(doc, open(out, "w"), indent=2)
for k, v in s.items():
    print(f"  {k:44} {v}")
PY
}

if [ "${BENCH_ONLY:-}" = cache ]; then
  echo "bench: the cache rows only, $REPS runs each, $(nproc) cores"
  cache_rows
  rm -f "$OUT"
  cache_summary
  echo "bench: results in $OUT"
  exit 0
fi

# An engine of our own when none answers: overlay2 when the kernel allows (what users
# run; with it `docker create` is cheap and the docker source reads layers in place),
# vfs otherwise. The table records which one ran.
if ! docker version >/dev/null 2>&1; then
  own_dockerd_start "$work/docker"
fi
driver=$(docker info -f '{{.Driver}}')

echo "bench: preparing inputs in $work"
# A real Debian tree with uWSGI and Python (the tests' fixture recipe, built by the tool).
cat >"$work/base.toml" <<'R'
[distro]
name = "bench-base"
[source]
type = "mmdebstrap"
suite = "bookworm"
variant = "minbase"
packages = ["net-tools", "ca-certificates", "uwsgi-core", "uwsgi-plugin-python3", "python3-venv", "python3-pip", "git", "curl"]
R
tree="$work/base/bench-base"
[ -d "$tree" ] || "$bin" -q build "$work/base.toml" --format dir --out "$work/base" >/dev/null
docker image inspect bd-bench:latest >/dev/null 2>&1 || tar -C "$tree" -cf - . | docker import - bd-bench:latest >/dev/null
[ -f "$work/image.tar" ] || docker save bd-bench:latest -o "$work/image.tar"
# The same image twice over (the tree again under /srv/copy, hard links dereferenced):
# the image-archive source's memory must not grow with the image.
if [ ! -f "$work/image-big.tar" ]; then
  rm -rf "$work/big" && cp -al "$tree" "$work/big" && mkdir -p "$work/big/srv" && cp -al "$tree" "$work/big/srv/copy"
  docker image inspect bd-bench-big:latest >/dev/null 2>&1 ||
    tar --hard-dereference -C "$work/big" -cf - . | docker import - bd-bench-big:latest >/dev/null
  docker save bd-bench-big:latest -o "$work/image-big.tar"
  rm -rf "$work/big"
fi
docker rm -f bd-bench-ctr >/dev/null 2>&1 || true
docker create --name bd-bench-ctr bd-bench:latest /bin/true >/dev/null
input_bytes=$(du -sb "$tree" | cut -f1)

printf '[distro]\nname = "bench"\n[source]\ntype = "docker"\nimage = "bd-bench:latest"\npull = "never"\n[nss]\nmode = "none"\n' >"$work/docker.toml"
printf '[distro]\nname = "bench"\n[source]\ntype = "image-archive"\nfile = "%s"\n[nss]\nmode = "none"\n' "$work/image.tar" >"$work/archive.toml"
printf '[distro]\nname = "bench"\n[source]\ntype = "image-archive"\nfile = "%s"\n[nss]\nmode = "none"\n' "$work/image-big.tar" >"$work/archive-big.toml"
printf '[distro]\nname = "bench"\n[source]\ntype = "rootfs"\ndir = "%s"\n[nss]\nmode = "none"\n' "$tree" >"$work/dir.toml"

# A registry of our own on loopback (Debian's docker-registry, plain HTTP), holding both
# images as skopeo pushes them (one gzip layer each; the big one's layer is > 512 MiB).
reg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
reg=127.0.0.1:$reg_port
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' "$work/registry" "$reg" >"$work/registry.yml"
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$reg_port") 2>/dev/null && break; sleep 0.1; done
skopeo copy --quiet --dest-tls-verify=false "docker-archive:$work/image.tar" "docker://$reg/bd-bench:latest"
skopeo copy --quiet --dest-tls-verify=false "docker-archive:$work/image-big.tar" "docker://$reg/bd-bench-big:latest"
printf '[distro]\nname = "bench"\n[source]\ntype = "registry"\nimage = "%s"\n[nss]\nmode = "none"\n' "$reg/bd-bench:latest" >"$work/registry.toml"
printf '[distro]\nname = "bench"\n[source]\ntype = "registry"\nimage = "%s"\n[nss]\nmode = "none"\n' "$reg/bd-bench-big:latest" >"$work/registry-big.toml"

echo "bench: $REPS runs each, input $(awk "BEGIN{printf \"%.0f\", $input_bytes/1048576}") MiB, $(nproc) cores, Docker storage driver $driver"
run "docker export | gzip -6" "$work/o/x.tar.gz" "docker export bd-bench-ctr | gzip -6 > $work/o/x.tar.gz"
run "docker export | pigz -6" "$work/o/x.tar.gz" "docker export bd-bench-ctr | pigz -6 > $work/o/x.tar.gz"
# What a user without a container at hand runs: the engine's container creation is part
# of the work (cheap on overlay2; with the vfs storage driver it copies the whole image).
run "docker create+export | pigz -6" "$work/o/x.tar.gz" "c=\$(docker create bd-bench:latest /bin/true) && docker export \$c | pigz -6 > $work/o/x.tar.gz && docker rm \$c"
# Every build-distro row but the cache rows runs with --no-cache: a rerun would otherwise
# reuse the compressed pieces of the one before, and these rows measure compression.
# The docker source as users get it (layers read in place on overlay2), and forced
# through the export stream (what a remote engine or another storage driver gets).
run "build-distro build (docker)" "$work/o/bench.tar.gz" "$bin -q build --no-cache $work/docker.toml --out $work/o"
run "build-distro build (docker, export)" "$work/o/bench.tar.gz" "BUILD_DISTRO_DOCKER_EXPORT=1 $bin -q build --no-cache $work/docker.toml --out $work/o"
run "build-distro build (image-archive)" "$work/o/bench.tar.gz" "$bin -q build --no-cache $work/archive.toml --out $work/o"
run "build-distro build (image-archive, 2x image)" "$work/o/bench.tar.gz" "$bin -q build --no-cache $work/archive-big.toml --out $work/o"
# Without a daemon: what users run today against a registry (their scratch copies removed
# afterwards, as build-distro removes its build directory), and the registry source.
run "skopeo copy + umoci unpack + tar | pigz -6" "$work/o/x.tar.gz" "skopeo copy --quiet --src-tls-verify=false docker://$reg/bd-bench:latest oci:$work/o/oci:latest && umoci unpack --image $work/o/oci:latest $work/o/bundle >/dev/null && tar -C $work/o/bundle/rootfs -cf - . | pigz -6 > $work/o/x.tar.gz && rm -rf $work/o/oci $work/o/bundle"
run "build-distro build (registry)" "$work/o/bench.tar.gz" "$bin -q build --no-cache $work/registry.toml --out $work/o"
run "build-distro build (registry, 2x image)" "$work/o/bench.tar.gz" "$bin -q build --no-cache $work/registry-big.toml --out $work/o"
run "tar -czf (directory)" "$work/o/x.tar.gz" "tar -C $tree -czf $work/o/x.tar.gz ."
run "build-distro build (rootfs dir)" "$work/o/bench.tar.gz" "$bin -q build --no-cache $work/dir.toml --out $work/o"

cache_rows

# Pack reproducibility: two packs of the same tree, same bytes.
"$bin" -q build --no-cache "$work/dir.toml" --out "$work/r1" >/dev/null
"$bin" -q build --no-cache "$work/dir.toml" --out "$work/r2" >/dev/null
if cmp -s "$work/r1/bench.tar.gz" "$work/r2/bench.tar.gz"; then identical=true; else identical=false; fi
echo "  packing twice gives identical bytes: $identical"

# Push: bytes sent by a full upload vs an rsync push of a one-file change.
push_full="" push_rsync=""
if "$bin" push --help 2>/dev/null | grep -q -- '--transport'; then
  bash scripts/bench-push.sh "$bin" "$work" >"$work/push.txt" 2>&1 && {
    push_full=$(awk '/^full/ {print $2}' "$work/push.txt"); push_rsync=$(awk '/^rsync/ {print $2}' "$work/push.txt"); }
  echo "  push bytes sent: full ${push_full:-?}, rsync one-file change ${push_rsync:-?}"
fi

# timed_row CASE LABEL SCRIPT ARGS...: a row from a script that prints
# `KEY SECONDS PEAK_RSS_KB ...` (and runs alone too); its stderr in $work/SCRIPT.err.
timed_row() {
  local case=$1 label=$2 err="$work/$(basename "$3" .sh).err" line secs rss; shift 2
  if line=$(bash "$@" 2>"$err"); then
    read -r _ secs rss _ <<<"$line"
    printf '%s\t%s\t0\t0\t%s\n' "$case" "$secs" "$rss" >>"$results"
    printf '  %-44s %7.2fs %8s %12s       %8s KB RSS\n' "$label" "$secs" "" "" "$rss"
  else
    echo "bench: $label failed:"; tail -n 5 "$err"
    echo -e "$case\tfailed\t\t\t" >>"$results"
  fi
}

# outdated on the default tarball, indexes cached (scripts/bench-outdated.sh runs it alone).
timed_row "build-distro outdated (default tarball, cached)" "build-distro outdated (default tarball)" \
  scripts/bench-outdated.sh "$bin" "$work/outdated"

# outdated with the CVE IDs of a stale bookworm tarball's security updates (changelogs
# not cached) against the plain check of the same tarball (--no-fixes).
if line=$(bash scripts/bench-outdated.sh "$bin" "$work/outdated" cves 2>"$work/outdated-cves.err"); then
  read -r _ p_secs c_secs c_rss _ <<<"$line"
  printf 'build-distro outdated --no-fixes (stale bookworm, cached)\t%s\t0\t0\t0\n' "$p_secs" >>"$results"
  printf 'build-distro outdated with CVE IDs (stale bookworm, cached)\t%s\t0\t0\t%s\n' "$c_secs" "$c_rss" >>"$results"
  printf '  %-44s %7.2fs (plain check %.2fs)        %8s KB RSS\n' "build-distro outdated with CVE IDs (stale)" "$c_secs" "$p_secs" "$c_rss"
else
  echo "bench: outdated with CVE IDs failed:"; tail -n 5 "$work/outdated-cves.err"
  echo -e "build-distro outdated with CVE IDs (stale bookworm, cached)\tfailed\t\t\t" >>"$results"
fi

# distros audit of the default distro published on a storage container of our own
# (loopback sshd, a minimal API), indexes cached: the outdated rows' tarball and cache.
timed_row "build-distro distros audit (default distro, cached)" "build-distro distros audit (default distro)" \
  scripts/bench-audit.sh "$bin" "$work/outdated"

python3 - "$results" "$OUT" "$(nproc)" "$input_bytes" "$identical" "${push_full:-}" "${push_rsync:-}" "$driver" <<'PY'
import json, sys
res, out, cores, inp, ident, pf, pr, driver = sys.argv[1:9]
rows = []
for line in open(res):
    f = line.rstrip("\n").split("\t")
    if f[1] == "failed":
        rows.append({"case": f[0], "failed": True}); continue
    rows.append({"case": f[0], "seconds": float(f[1]), "mb_per_s": float(f[2]), "output_bytes": int(f[3]), "peak_rss_kb": int(f[4])})
by = {r["case"]: r for r in rows if not r.get("failed")}
def ratio(a, b):
    return round(by[a]["seconds"] / by[b]["seconds"], 2) if a in by and b in by else None
summary = {
    "docker: speedup vs gzip": ratio("docker export | gzip -6", "build-distro build (docker)"),
    "docker: speedup vs pigz": ratio("docker export | pigz -6", "build-distro build (docker)"),
    "docker: speedup vs create+export | pigz": ratio("docker create+export | pigz -6", "build-distro build (docker)"),
    "docker (export forced): speedup vs pigz": ratio("docker export | pigz -6", "build-distro build (docker, export)"),
    "image-archive: speedup vs pigz": ratio("docker export | pigz -6", "build-distro build (image-archive)"),
    "dir: speedup vs tar -czf": ratio("tar -czf (directory)", "build-distro build (rootfs dir)"),
    "registry: speedup vs skopeo+umoci+pigz": ratio("skopeo copy + umoci unpack + tar | pigz -6", "build-distro build (registry)"),
}
reg1, reg2 = by.get("build-distro build (registry)"), by.get("build-distro build (registry, 2x image)")
if reg1 and reg2:
    summary["registry: peak RSS MB (1x, 2x image)"] = [round(reg1["peak_rss_kb"] / 1024), round(reg2["peak_rss_kb"] / 1024)]
one, two = by.get("build-distro build (image-archive)"), by.get("build-distro build (image-archive, 2x image)")
if one and two:
    summary["image-archive: peak RSS MB (1x, 2x image)"] = [round(one["peak_rss_kb"] / 1024), round(two["peak_rss_kb"] / 1024)]
o = by.get("build-distro outdated (default tarball, cached)")
if o:
    summary["outdated: seconds, peak RSS MB (goal < 5, < 100)"] = [o["seconds"], round(o["peak_rss_kb"] / 1024)]
r = ratio("build-distro outdated with CVE IDs (stale bookworm, cached)", "build-distro outdated --no-fixes (stale bookworm, cached)")
if r is not None:
    summary["outdated with CVE IDs: x the plain check (goal < 2)"] = r
a = by.get("build-distro distros audit (default distro, cached)")
if a:
    summary["audit: seconds, peak RSS MB (goal < 5, < 100)"] = [a["seconds"], round(a["peak_rss_kb"] / 1024)]
if "build-distro build (docker)" in by and "docker export | gzip -6" in by:
    summary["docker: size vs gzip"] = round(by["build-distro build (docker)"]["output_bytes"] / by["docker export | gzip -6"]["output_bytes"], 3)
doc = {"cores": int(cores), "docker_storage_driver": driver, "input_bytes": int(inp), "results": rows, "summary": summary,
       "pack_identical_across_runs": ident == "true",
       "push_bytes_sent": {"full": int(pf) if pf else None, "rsync_one_file_change": int(pr) if pr else None}}
json.dump(doc, open(out, "w"), indent=2)
print()
for k, v in summary.items():
    print(f"  {k:44} {v}")
PY
cache_summary
echo
echo "bench: results in $OUT"
