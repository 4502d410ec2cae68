#!/usr/bin/env bash
# Time and peak memory of `build-distro distros audit` of one custom distro, the default
# distro tarball published on a storage container, with the mirror indexes cached (a first
# run warms the cache; the InRelease files are fetched and verified every time, as in real
# use).
#   bash scripts/bench-audit.sh [BIN [WORK]]      (alone, or called by bench.sh)
# The storage container is real where users have one: its own sshd on 127.0.0.1 and a
# local user named by a uid (as bench-push.sh), removed after. The API is a minimal server
# on 127.0.0.1 answering the three calls the audit makes as platform.md describes them.
# Reuses WORK/default/*.tar.gz (bench-outdated.sh's) and WORK/cache. Goal under 5 s and
# under 100 MB. Prints one line: `audit SECONDS PEAK_RSS_KB`.
# Needs root (the build, sshd, the user) and deb.debian.org.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-$PWD/target/release/build-distro}
work=${2:-/var/tmp/bd-bench-audit}
REPS=${REPS:-3}
uid=39991 app=39992 name=debian-trixie path=debian-trixie-0123456789ab
. scripts/bench-lib.sh
[ -x "$bin" ] || { cargo build --release --locked >&2; bin=$PWD/target/release/build-distro; }
mkdir -p "$work/default"
tgz=$(ls "$work/default"/*.tar.gz 2>/dev/null | head -n 1 || true)
if [ -z "$tgz" ]; then
  "$bin" -q build --out "$work/default" >/dev/null
  tgz=$(ls "$work/default"/*.tar.gz | head -n 1)
fi
export BUILD_DISTRO_CACHE_DIR="$work/cache"

# Not under WORK: the storage user must be able to reach its home (mktemp dirs are 0700).
lab=$(mktemp -d /var/tmp/bd-bench-audit.XXXXXX)
chmod 755 "$lab"
api_pid=""
cleanup() {
  stop_storage
  if [ -n "$api_pid" ]; then kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; fi
  rm -rf "$lab"
}
trap cleanup EXIT

# The published version, as a push leaves it: the tree under distros/PATH, owned by S
# (start_storage chowns the home).
home="$lab/containers/$uid"
mkdir -p "$home/distros/$path"
tar -xzf "$tgz" -C "$home/distros/$path"
start_storage "$uid" "$lab"

# The API: storage container S (server address 127.0.0.1), one container using the
# distro, the distro itself; HTTP Basic or 401. It writes its port once listening.
cat >"$lab/api.py" <<'PY'
import base64, json, os, sys, uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

port_file, user, password, storage, app, name, path = sys.argv[1:8]
storage, app = int(storage), int(app)
auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

def container(uid, cname, custom):
    # The list's keys (no custom_distros_storage: only GET /containers/U has it).
    return {"uid": uid, "name": cname, "hostname": f"{cname}.example.com", "ip": f"10.0.0.{uid % 250}",
            "memory": 1024, "storage": 20000, "uuid": str(uuid.uuid4()), "distro": 1,
            "distro_name": "Debian 13 trixie", "custom_distro": custom,
            "custom_distro_name": name if custom else None, "server": "bench",
            "server_address": "127.0.0.1", "tags": []}

routes = {
    "/api/containers/": [container(storage, "storage", None), container(app, "app", 1)],
    "/api/custom_distros/": [{"id": 1, "name": name, "container": storage}],
    "/api/custom_distro/1": {"id": 1, "container": storage, "name": name, "path": path,
                             "note": "bench-audit.sh", "uuid": str(uuid.uuid4())},
}

class Api(BaseHTTPRequestHandler):
    def reply(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.headers.get("Authorization") != auth:
            self.reply(401, {"error": "Unauthorized"}, [("WWW-Authenticate", 'Basic realm="uwsgi.it api"')])
        elif self.path in routes:
            self.reply(200, routes[self.path])
        elif self.path.startswith("/api/custom_distro/"):
            self.reply(403, {"error": "Forbidden"})
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Api)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
PY
export UWSGI_IT_USER=bench UWSGI_IT_PASSWORD=bench-audit-pw
unset UWSGI_IT_PASSWORD_FILE UWSGI_IT_CA_FILE
python3 "$lab/api.py" "$lab/api.port" "$UWSGI_IT_USER" "$UWSGI_IT_PASSWORD" "$uid" "$app" "$name" "$path" &
api_pid=$!
for _ in $(seq 1 100); do [ -s "$lab/api.port" ] && break; sleep 0.05; done
export UWSGI_IT_API="http://127.0.0.1:$(cat "$lab/api.port")/api"

# Exit 1 only says a rebuild is due: a result, not a failure; 2 (not audited) fails.
cmd="'$bin' -q distros audit --json --ssh-host 127.0.0.1 --ssh-port $storage_port --identity '$lab/client_key'"
cmd+=" --ssh-option StrictHostKeyChecking=no --ssh-option 'UserKnownHostsFile=$lab/known_hosts'"
cmd+=" --ssh-option BatchMode=yes >/dev/null"
best "$cmd"
echo "audit $best $rss"
