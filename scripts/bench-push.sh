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
# Not under WORK: the storage user must be able to reach its home (mktemp dirs are 0700).
lab=$(mktemp -d /var/tmp/bd-bench-push.XXXXXX)
chmod 755 "$lab"
sshd_pid=""
cleanup() {
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
  userdel -f "$uid" >/dev/null 2>&1 || true
  rm -rf "$lab"
}
trap cleanup EXIT

home="$lab/containers/$uid"
mkdir -p "$home/distros"
# `*`, not the default `!`: sshd without PAM refuses locked accounts.
if id "$uid" >/dev/null 2>&1; then usermod -d "$home" "$uid" >/dev/null 2>&1 || true
else useradd -M -s /bin/sh -p '*' -U -u "$uid" -d "$home" "$uid"; fi
chown -R "$uid:$uid" "$home"
ssh-keygen -q -t ed25519 -N '' -f "$lab/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$lab/client_key"
cp "$lab/client_key.pub" "$lab/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$lab/sshd_config" <<C
Port $port
ListenAddress 127.0.0.1
HostKey $lab/host_key
PidFile none
AuthorizedKeysFile $lab/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers $uid
LogLevel ERROR
C
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$lab/sshd_config" 2>"$lab/sshd.log" &
sshd_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done

ssh_flags=(--to "$uid" --no-register --ssh-host 127.0.0.1 --ssh-port "$port"
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
