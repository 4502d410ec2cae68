#!/usr/bin/env bash
# Bytes a push sends: a full upload (ssh, the archive) against an rsync push of a one-file
# change (unchanged files hard-linked to the previous version). Called by bench.sh as
#   bench-push.sh BIN WORK
# with WORK/r1/bench.tar.gz (+ .manifest, .json) and WORK/dir.toml from bench.sh. Prints
# "full N" and "rsync N". Needs root: it starts its own sshd on 127.0.0.1 and a local
# user named by a uid, as the platform's storage containers are, and removes both after.
set -euo pipefail
bin=$1 work=$2
uid=39990
. "$(dirname "$0")/bench-lib.sh"
# Not under WORK: the storage user must be able to reach its home (mktemp dirs are 0700).
lab=$(mktemp -d /var/tmp/bd-bench-push.XXXXXX)
chmod 755 "$lab"
cleanup() {
  stop_storage
  rm -rf "$lab"
}
trap cleanup EXIT
start_storage "$uid" "$lab"

ssh_flags=(--to "$uid" --no-register --ssh-host 127.0.0.1 --ssh-port "$storage_port"
  --identity "$lab/client_key" --ssh-option StrictHostKeyChecking=no
  --ssh-option "UserKnownHostsFile=$lab/known_hosts" --ssh-option BatchMode=yes --json)
# push ARGS: the bytes it sent, or the error and a failure.
sent() {
  local out
  out=$("$bin" -q push "$@" "${ssh_flags[@]}") || { echo "bench-push: push $* failed: $out" >&2; return 1; }
  python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_sent"])' <<<"$out"
}

# The same distro with one more file.
cp "$work/dir.toml" "$lab/changed.toml"
printf '[[files]]\npath = "/etc/bench-change"\ncontent = "one file changed\\n"\n' >>"$lab/changed.toml"
"$bin" -q build "$lab/changed.toml" --out "$lab/changed" >/dev/null

full=$(sent "$work/r1/bench.tar.gz")
rsync=$(sent "$lab/changed/bench.tar.gz" --transport rsync)
echo "full $full"
echo "rsync $rsync"
