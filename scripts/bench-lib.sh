# Sourced by bench-push.sh, bench-audit.sh and bench-outdated.sh: a storage container of
# our own, and the timing the rows share. Needs root.
#   start_storage UID LAB   a storage container as the platform's are: a local user named
#                           by UID (home LAB/containers/UID, its distros/ made here, what is
#                           already there chowned to it) and its own sshd on
#                           127.0.0.1:$storage_port taking LAB/client_key; returns once sshd
#                           answers. LAB must be reachable by that user (not under a 0700
#                           mktemp dir). Call stop_storage from the EXIT trap, set before.
#   stop_storage            stop that sshd, remove the user (LAB stays the caller's)
#   best CMD [PREP]         the fastest of $REPS runs of CMD (PREP before each, caches
#                           dropped, one warm-up run first) in $best, its peak RSS in $rss
#                           (KB), timed by /usr/bin/time -v into $work/time.txt. Exit 1 is
#                           a result (updates pending, a rebuild due), not a failure.
storage_uid=""
storage_pid=""
storage_port=""

start_storage() {
  local uid=$1 lab=$2 home="$2/containers/$1"
  storage_uid=$uid
  mkdir -p "$home/distros"
  # `*`, not the default `!`: sshd without PAM refuses locked accounts.
  if id "$uid" >/dev/null 2>&1; then usermod -d "$home" "$uid" >/dev/null 2>&1 || true
  else useradd -M -s /bin/sh -p '*' -U -u "$uid" -d "$home" "$uid"; fi
  chown -R "$uid:$uid" "$home"
  ssh-keygen -q -t ed25519 -N '' -f "$lab/host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$lab/client_key"
  cp "$lab/client_key.pub" "$lab/authorized_keys"
  storage_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$lab/sshd_config" <<C
Port $storage_port
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
  storage_pid=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$storage_port") 2>/dev/null && break
    sleep 0.05
  done
}

stop_storage() {
  if [ -n "$storage_pid" ]; then
    kill "$storage_pid" 2>/dev/null || true
    wait "$storage_pid" 2>/dev/null || true
  fi
  if [ -n "$storage_uid" ]; then userdel -f "$storage_uid" >/dev/null 2>&1 || true; fi
  storage_pid="" storage_uid=""
}

best() {
  local cmd="$1 || [ \$? -eq 1 ]" prep=${2:-true} wall kb
  bash -c "$cmd"
  best="" rss=""
  for _ in $(seq 1 "$REPS"); do
    bash -c "$prep"
    sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    /usr/bin/time -v -o "$work/time.txt" bash -c "$cmd"
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.txt")
    kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
    if [ -z "$best" ] || awk "BEGIN{exit !($wall < $best)}"; then best=$wall; rss=$kb; fi
  done
}
