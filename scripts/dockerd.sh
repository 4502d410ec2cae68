# Sourced by test.sh and bench.sh: a Docker engine of our own when none answers, stopped
# (and its data removed) by own_dockerd_stop. Needs root.
#   own_dockerd_start DIR   start one with its data, socket and log under DIR and export
#                           DOCKER_HOST; overlay2 (what users' engines run, and what
#                           reading image layers in place needs) when the kernel mounts it
#                           on DIR's filesystem, vfs otherwise
#   own_dockerd_stop        stop it, unmount what it left, remove DIR
own_dockerd_pid=""
own_dockerd_dir=""

own_dockerd_try() {
  dockerd --data-root "$own_dockerd_dir/data" --exec-root "$own_dockerd_dir/exec" \
    --pidfile "$own_dockerd_dir/dockerd.pid" --host "unix://$own_dockerd_dir/docker.sock" \
    --storage-driver="$1" --iptables=false --ip6tables=false --bridge=none \
    >>"$own_dockerd_dir/dockerd.log" 2>&1 &
  own_dockerd_pid=$!
  for _ in $(seq 1 100); do
    docker version >/dev/null 2>&1 && return 0
    kill -0 "$own_dockerd_pid" 2>/dev/null || break
    sleep 0.2
  done
  own_dockerd_halt
  return 1
}

own_dockerd_halt() {
  [ -n "$own_dockerd_pid" ] || return 0
  kill "$own_dockerd_pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$own_dockerd_pid" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$own_dockerd_pid" 2>/dev/null || true
  own_dockerd_pid=""
}

own_dockerd_start() {
  own_dockerd_dir=$1
  mkdir -p "$own_dockerd_dir"
  export DOCKER_HOST="unix://$own_dockerd_dir/docker.sock"
  if ! own_dockerd_try overlay2 && ! own_dockerd_try vfs; then
    echo "dockerd did not start:"; tail -n 20 "$own_dockerd_dir/dockerd.log"
    return 1
  fi
  echo "started dockerd ($(docker info -f '{{.Driver}}') storage driver) in $own_dockerd_dir"
}

own_dockerd_stop() {
  [ -n "$own_dockerd_dir" ] || return 0
  own_dockerd_halt
  # Layers and container mounts first, so removal never crosses into them.
  grep -o " $own_dockerd_dir/[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$own_dockerd_dir"
  own_dockerd_dir=""
}
