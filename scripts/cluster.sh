#!/usr/bin/env bash
# nbcanvas on a single-node Docker Swarm (docs/DEPLOY.md), as root:
#   scripts/cluster.sh up     install what is missing, build the images and
#                             the binary, make this engine a one-node swarm
#                             on 127.0.0.1 if it is in none, deploy
#                             deploy/stack.yml (2 api replicas, Redis,
#                             HAProxy), wait until the front answers ready
#   scripts/cluster.sh down   remove the stack and whatever its replicas
#                             left, and leave the swarm if `up` made it
# The front is http://127.0.0.1:8180. API keys: $NBCANVAS_KEYS_FILE, else
# /etc/nbcanvas/api_keys.json (made with one key, for the tenant "operator",
# whose key is written to /etc/nbcanvas/operator.key, when there is none).
# NBCANVAS_BINARY names a binary to put in the image instead of building
# build/nbcanvas.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
stack=nbcanvas
state=/var/lib/nbcanvas
made_swarm=$state/swarm-made-by-cluster-sh
keys=${NBCANVAS_KEYS_FILE:-/etc/nbcanvas/api_keys.json}
front=http://127.0.0.1:8180

log() { echo "cluster: $*"; }

swarm_state() {
    docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || true
}

stack_containers() {
    docker ps -aq --filter "label=com.docker.stack.namespace=$stack"
}

make_keys() {
    local binary=$1 out
    [ -s "$keys" ] && return
    mkdir -p "$(dirname "$keys")"
    out=$("$binary" key new operator)
    (
        umask 077
        echo "[$(sed -n 's/^entry: //p; ' <<<"$out" |
            sed 's/}$/, "metrics": true}/')]" >"$keys"
        sed -n 's/^key: //p' <<<"$out" >"$(dirname "$keys")/operator.key"
    )
    log "made $keys; the operator's key is in $(dirname "$keys")/operator.key"
}

up() {
    local binary=${NBCANVAS_BINARY:-}
    bash "$top/scripts/install-deps.sh"
    bash "$top/scripts/start-docker.sh"
    bash "$top/scripts/build-images.sh"
    if [ -z "$binary" ]; then
        cmake -S "$top" -B "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            >/dev/null
        cmake --build "$top/build" -j"$(nproc)" >/dev/null
        binary=$top/build/nbcanvas
    fi
    NBCANVAS_BINARY=$binary bash "$top/scripts/build-images.sh" server
    make_keys "$binary"

    if [ "$(swarm_state)" != active ]; then
        log "docker swarm init on 127.0.0.1"
        docker swarm init --advertise-addr 127.0.0.1 \
            --listen-addr 127.0.0.1:2377 >/dev/null
        mkdir -p "$state"
        touch "$made_swarm"
    fi
    NBCANVAS_KEYS_FILE=$keys \
        NBCANVAS_KEYS_HASH=$(sha256sum "$keys" | cut -c1-12) \
        NBCANVAS_FRONT_HASH=$(sha256sum "$top/deploy/haproxy.cfg" | cut -c1-12) \
        docker stack deploy --resolve-image never --prune \
        -c "$top/deploy/stack.yml" "$stack" 2>&1 |
        grep -v -e 'detach=false' -e 'will become the default' || true
    log "deployed; waiting for the front at $front"
    for _ in $(seq 1 180); do
        if curl -fsS -o /dev/null --max-time 2 "$front/readyz" 2>/dev/null &&
            [ "$(docker service ls --filter "name=${stack}_api" \
                --format '{{.Replicas}}')" = 2/2 ] &&
            ! docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' \
                "${stack}_api" "${stack}_front" | grep -q updating; then
            # secrets and configs of earlier deploys (in use ones stay)
            docker secret ls -q --filter "name=${stack}_api_keys_" |
                xargs -r docker secret rm >/dev/null 2>&1 || true
            docker config ls -q --filter "name=${stack}_haproxy_" |
                xargs -r docker config rm >/dev/null 2>&1 || true
            log "ready: $front (api 2/2)"
            return 0
        fi
        sleep 1
    done
    log "the front did not answer ready within 180 s" >&2
    docker service ps --no-trunc "${stack}_api" >&2 || true
    return 1
}

down() {
    if docker info >/dev/null 2>&1; then
        if [ "$(swarm_state)" = active ] &&
            docker stack ls --format '{{.Name}}' | grep -qx "$stack"; then
            log "removing the stack"
            docker stack rm "$stack" >/dev/null
        fi
        # the replicas drain on SIGTERM and remove their sandboxes
        for _ in $(seq 1 120); do
            [ -z "$(stack_containers)" ] && break
            sleep 1
        done
        stack_containers | xargs -r docker rm -f >/dev/null
        docker ps -aq --filter label=org.nbcanvas.managed=1 \
            --filter label=org.nbcanvas.owner | while read -r id; do
            case $(docker inspect -f '{{index .Config.Labels "org.nbcanvas.owner"}}' "$id") in
            api-*) docker rm -f -v "$id" >/dev/null ;;
            esac
        done
        if [ -e "$made_swarm" ]; then
            log "leaving the swarm cluster.sh made"
            docker swarm leave --force >/dev/null 2>&1 || true
            # left behind by the swarm (it has no containers any more)
            docker network rm docker_gwbridge >/dev/null 2>&1 || true
            rm -f "$made_swarm"
        fi
    fi
    log "down"
}

case "${1:-}" in
up) up ;;
down) down ;;
*)
    echo "usage: scripts/cluster.sh up|down" >&2
    exit 2
    ;;
esac
