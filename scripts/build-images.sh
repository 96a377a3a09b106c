#!/usr/bin/env bash
# Builds the sandbox images from notebook-images/<name>/ without any registry.
#
#   stage 1: packages.txt -> a Debian bookworm root filesystem made by
#            mmdebstrap from the host's own apt sources, with the unprivileged
#            user "sandbox" (uid 1000), imported as nbcanvas-base/<name>:<hash>.
#   stage 2: docker build of notebook-images/<name>/Dockerfile on that base
#            (no step needs a network) -> nbcanvas/<name>:latest.
#
# Both stages are cached by content hash: stage 1 by packages.txt, stage 2 by
# every file of notebook-images/<name>/ (and templates/ for the python image),
# recorded as the image label org.nbcanvas.hash.
#
# The notebook images (python, r) also take the relay ($NBCANVAS_RELAY,
# default build/nbcanvas-relay, built first: scripts/setup.sh builds before
# it builds images).
#
# "server" is the service's own image (deploy/image/, for scripts/cluster.sh):
# the same two stages, with the nbcanvas binary ($NBCANVAS_BINARY, default
# build/nbcanvas, built first), languages.json and examples/ in the context.
# Usage:
#   scripts/build-images.sh [--force] [name ...]
#       (default: every sandbox image; "server" only when named)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
force=0
if [ "${1:-}" = "--force" ]; then
    force=1
    shift
fi
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for d in "$top"/notebook-images/*/; do
        [ -f "$d/packages.txt" ] && names+=("$(basename "$d")")
    done
fi
export DOCKER_BUILDKIT=0

apt_sources() {
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
        if [ -s "$f" ]; then
            echo "$f"
            return
        fi
    done
    echo "build-images: no apt sources found on this host" >&2
    exit 1
}

hash_files() {
    (cd "$top" && find "$@" -type f -print0 | LC_ALL=C sort -z |
        xargs -0 sha256sum | sha256sum | cut -c1-16)
}

image_label() {
    docker image inspect -f '{{index .Config.Labels "org.nbcanvas.hash"}}' \
        "$1" 2>/dev/null || true
}

# Where an image's files are.
image_dir() {
    if [ "$1" = server ]; then
        echo deploy/image
    else
        echo "notebook-images/$1"
    fi
}

build_base() {
    local name=$1 tag=$2 pkgs
    pkgs=$(grep -v '^\s*#' "$top/$(image_dir "$name")/packages.txt" |
        tr -s ' \n' ',' | sed 's/^,//; s/,$//')
    echo "build-images: $tag: mmdebstrap bookworm with $pkgs"
    mmdebstrap --variant=minbase --include="$pkgs" \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook='chroot "$1" useradd --create-home --uid 1000 --user-group --shell /bin/bash sandbox' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        --quiet bookworm - "$(apt_sources)" |
        docker import --change 'USER sandbox' \
            --change 'WORKDIR /home/sandbox' \
            --change 'ENV HOME=/home/sandbox LANG=C.UTF-8' \
            --change "LABEL org.nbcanvas.hash=$3" - "$tag"
}

# A notebook image (python, r) runs nbcanvas's relay as its init: its
# Dockerfile copies it, and says so.
takes_relay() {
    grep -q 'nbcanvas-relay' "$top/$(image_dir "$1")/Dockerfile"
}

build_one() {
    local name=$1 rel dir base_hash base full_hash
    rel=$(image_dir "$name")
    dir="$top/$rel"
    local paths=("$rel")
    if takes_relay "$name"; then
        relay=${NBCANVAS_RELAY:-$top/build/nbcanvas-relay}
        [ -x "$relay" ] || {
            echo "build-images: no relay at $relay (build the project first)" >&2
            exit 1
        }
        paths+=("$relay")
    fi
    if [ "$name" = python ]; then
        paths+=(templates)
    fi
    if [ "$name" = server ]; then
        binary=${NBCANVAS_BINARY:-$top/build/nbcanvas}
        [ -x "$binary" ] || {
            echo "build-images: no nbcanvas binary at $binary (build it first)" >&2
            exit 1
        }
        paths+=("$binary" languages.json examples)
    fi
    base_hash=$(hash_files "$rel/packages.txt")
    base="nbcanvas-base/$name:$base_hash"
    full_hash=$(hash_files "${paths[@]}" scripts/build-images.sh)

    if [ $force = 0 ] && [ "$(image_label "nbcanvas/$name:latest")" = "$full_hash" ]; then
        echo "build-images: nbcanvas/$name:latest is up to date ($full_hash)"
        return
    fi
    if [ $force = 1 ] || [ "$(image_label "$base")" != "$base_hash" ]; then
        build_base "$name" "$base" "$base_hash"
    fi

    local ctx
    ctx=$(mktemp -d)
    trap 'rm -rf "$ctx"' RETURN
    cp -a "$dir/." "$ctx/"
    if [ "$name" = python ]; then
        cp -a "$top/templates" "$ctx/templates"
    fi
    if takes_relay "$name"; then
        cp "$relay" "$ctx/nbcanvas-relay"
    fi
    if [ "$name" = server ]; then
        cp "$binary" "$ctx/nbcanvas"
        cp -a "$top/languages.json" "$top/examples" "$ctx/"
    fi
    if [ "$name" = python ]; then
        # Debian ships plotly.js unminified (8.7 MB in every plotly page):
        # minified here with Debian's terser, mangling names only (3.9 MB)
        docker run --rm --network none "$base" \
            cat /usr/share/python3-plotly/plotly.js >"$ctx/plotly.js"
        NODE_PATH=/usr/share/nodejs terser "$ctx/plotly.js" --mangle \
            --comments false -o "$ctx/plotly.min.js"
        rm "$ctx/plotly.js"
    fi
    if [ ! -f "$ctx/Dockerfile" ]; then
        printf 'ARG BASE\nFROM $BASE\n' >"$ctx/Dockerfile"
    fi
    local labels=(--label "org.nbcanvas.hash=$full_hash")
    if [ "$name" = python ]; then
        # What the image has installed, by project name (PEP 503 form):
        # packages at run time leave these at home unless named.
        labels+=(--label "org.nbcanvas.python-packages=$(docker run --rm \
            --network none "$base" python3 -c 'import importlib.metadata as m, re
print(" ".join(sorted({re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower()
                       for d in m.distributions() if d.metadata["Name"]})))')")
    fi
    docker build --quiet --network none --build-arg "BASE=$base" \
        "${labels[@]}" -t "nbcanvas/$name:latest" "$ctx"
    echo "build-images: built nbcanvas/$name:latest ($full_hash)"
}

for n in "${names[@]}"; do
    build_one "$n"
done
