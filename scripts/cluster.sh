#!/usr/bin/env bash
# nbcanvas on a single-node Docker Swarm (docs/DEPLOY.md), as root:
#   scripts/cluster.sh up     install what is missing, build the images and
#                             the binary, make this engine a one-node swarm
#                             on 127.0.0.1 if it is in none, deploy
#                             deploy/stack.yml (2 api replicas, Redis,
#                             HAProxy), wait until the front answers ready
#   scripts/cluster.sh down   remove the stack and whatever its replicas
#                             left, and leave the swarm if `up` made it
# The front is http://127.0.0.1:8180. API keys: $CLUSTER_KEYS_FILE, else
# /etc/nbcanvas/api_keys.json (made with one key, for the tenant "operator",
# whose key is written to /etc/nbcanvas/operator.key, when there is none).
# Redis's password is made once into /etc/nbcanvas/cluster/ (mode 700),
# with the two files the stack takes it from as Swarm secrets.
# NBCANVAS_BINARY names a binary to put in the image instead of building
# build/nbcanvas.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
stack=nbcanvas
state=/var/lib/nbcanvas
made_swarm=$state/swarm-made-by-cluster-sh # holds the swarm's node id
keys=${CLUSTER_KEYS_FILE:-/etc/nbcanvas/api_keys.json}
secrets=${CLUSTER_SECRETS_DIR:-/etc/nbcanvas/cluster}
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

# Redis's password, and the files the stack's secrets are made from.
make_secrets() {
    [ -s "$secrets/redis_auth.conf" ] && [ -s "$secrets/api_config.json" ] &&
        return
    (
        umask 077
        mkdir -p "$secrets"
        password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
        echo "requirepass $password" >"$secrets/redis_auth.conf"
        echo "{\"cache_redis_url\": \"redis://:$password@127.0.0.1:6390\"}" \
            >"$secrets/api_config.json"
    )
    log "made Redis's password in $secrets"
}

hash_of() { sha256sum "$@" | sha256sum | cut -c1-12; }

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
    make_secrets

    if [ "$(swarm_state)" != active ]; then
        log "docker swarm init on 127.0.0.1"
        docker swarm init --advertise-addr 127.0.0.1 \
            --listen-addr 127.0.0.1:2377 >/dev/null
        mkdir -p "$state"
        docker info --format '{{.Swarm.NodeID}}' >"$made_swarm"
    fi
    local out
    if ! out=$(CLUSTER_KEYS_FILE=$keys CLUSTER_SECRETS_DIR=$secrets \
        CLUSTER_KEYS_HASH=$(hash_of "$keys") \
        CLUSTER_CONFIG_HASH=$(hash_of "$secrets"/*) \
        CLUSTER_FRONT_HASH=$(hash_of "$top/deploy/haproxy.cfg") \
        docker stack deploy --resolve-image never --prune \
        -c "$top/deploy/stack.yml" "$stack" 2>&1); then
        echo "$out" >&2
        log "docker stack deploy failed" >&2
        return 1
    fi
    log "deployed; waiting for the front at $front"
    for _ in $(seq 1 180); do
        if curl -fsS -o /dev/null --max-time 2 "$front/readyz" 2>/dev/null &&
            [ "$(docker service ls --filter "name=${stack}_api" \
                --format '{{.Replicas}}')" = 2/2 ] &&
            ! docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' \
                "${stack}_api" "${stack}_front" | grep -q updating; then
            # secrets and configs of earlier deploys (in use ones stay)
            docker secret ls --format '{{.Name}}' |
                grep -E "^${stack}_(api_keys|api_config|redis_auth)_" |
                xargs -r docker secret rm >/dev/null 2>&1 || true
            docker config ls --format '{{.Name}}' |
                grep -E "^${stack}_haproxy_" |
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
        # the replicas drain on SIGTERM (stop_grace_period: 6 minutes) and
        # remove their sandboxes
        for _ in $(seq 1 400); do
            [ -z "$(stack_containers)" ] && break
            sleep 1
        done
        stack_containers | xargs -r docker rm -f >/dev/null
        docker ps -aq --filter label=org.nbcanvas.managed=1 \
            --filter label=org.nbcanvas.owner | while read -r id; do
            case $(docker inspect -f '{{index .Config.Labels "org.nbcanvas.owner"}}' "$id") in
            "${stack}_api".*) docker rm -f -v "$id" >/dev/null ;;
            esac
        done
        # the swarm `up` made, if it is still that one and has no other node
        if [ -e "$made_swarm" ]; then
            if [ "$(docker info --format '{{.Swarm.NodeID}}')" = "$(cat "$made_swarm")" ] &&
                [ "$(docker node ls -q 2>/dev/null | wc -l)" -le 1 ]; then
                log "leaving the swarm cluster.sh made"
                docker swarm leave --force >/dev/null 2>&1 || true
                # left behind by the swarm (it has no containers any more)
                docker network rm docker_gwbridge >/dev/null 2>&1 || true
            else
                log "the swarm has changed since up made it: left as it is"
            fi
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
