#!/usr/bin/env bash
# Makes sure a Docker engine answers on /var/run/docker.sock.
# If none does, starts Debian's dockerd without a bridge or iptables rules
# (job containers only ever use network "none") and with gVisor's runsc
# registered as the runtime "runsc" for the hardened mode.
set -euo pipefail

sock=${DOCKER_SOCK:-/var/run/docker.sock}
log=${DOCKERD_LOG:-/var/log/nbcanvas-dockerd.log}

engine_answers() {
    curl -fsS --max-time 3 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1
}

conf=/etc/nbcanvas/dockerd.json
mkdir -p /etc/nbcanvas
# Not --oci-seccomp: with this runsc (20221219) the engine's default
# profile inside the sandbox makes libzmq's threads fail (EPERM), so no
# kernel can start; the sentry itself runs under its own host-side filter
# (docs/SECURITY.md).
want=$(cat <<'JSON'
{
  "runtimes": {
    "runsc": {
      "path": "/usr/bin/runsc",
      "runtimeArgs": ["--platform=ptrace", "--network=none"]
    }
  }
}
JSON
)

has_runsc() {
    curl -fsS --max-time 3 --unix-socket "$sock" http://localhost/info |
        grep -q '"runsc"'
}

if engine_answers; then
    # An engine this script started earlier, with an older config: runtimes
    # are among what dockerd reloads on SIGHUP.
    if [ -f "$conf" ] && [ "$(cat "$conf")" != "$want" ] &&
        [ -f /var/run/docker.pid ]; then
        echo "$want" >"$conf"
        kill -HUP "$(cat /var/run/docker.pid)"
        sleep 2
        echo "start-docker: engine reloaded $conf"
    fi
    # An engine started by someone else (Debian's docker.service under
    # systemd starts one when docker.io is installed): register runsc in
    # its own config file and have it reload.
    if ! has_runsc && [ ! -f "$conf" ] && [ -f /var/run/docker.pid ]; then
        python3 - "$want" <<'PY'
import json, os, sys
path = "/etc/docker/daemon.json"
cfg = json.load(open(path)) if os.path.exists(path) else {}
cfg.setdefault("runtimes", {}).update(json.loads(sys.argv[1])["runtimes"])
os.makedirs(os.path.dirname(path), exist_ok=True)
json.dump(cfg, open(path, "w"), indent=2)
PY
        kill -HUP "$(cat /var/run/docker.pid)"
        sleep 2
        echo "start-docker: registered runsc in /etc/docker/daemon.json"
    fi
    exit 0
fi
echo "$want" >"$conf"

echo "start-docker: starting dockerd (log: $log)"
nohup dockerd --config-file "$conf" --bridge=none --iptables=false \
    --ip6tables=false --host "unix://$sock" >>"$log" 2>&1 &

for _ in $(seq 1 60); do
    if engine_answers; then
        echo "start-docker: engine is up"
        exit 0
    fi
    sleep 1
done
echo "start-docker: dockerd did not answer within 60 s; see $log" >&2
exit 1
