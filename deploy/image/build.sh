#!/usr/bin/env bash
# `make image`: build the bridge's container image (the root Dockerfile) with
# podman, or docker when podman is absent, and tag it NAME:latest and NAME:VERSION.
#
# 1. Wheels, built on the host: the project and its runtime dependencies, for
#    the host's Python, into build/image/wheels (the only build context, see
#    .dockerignore). The image build installs from them with --no-index: no
#    package index, so no TLS trust store, is needed inside the build, and the
#    image holds exactly what the host resolved.
# 2. The base: the one given (default the official python:3.11-slim), used
#    when present, else pulled; when the pull fails (no registry reachable, as
#    on the project's machines) or with --base debian, an equivalent base made
#    from Debian packages (mmdebstrap: python3, python3-venv, ca-certificates),
#    imported once as DEBIAN_BASE and reused while that tag exists.
# 3. The build, the same Dockerfile for either base. Reproducible: with
#    SOURCE_DATE_EPOCH the commit's time, the same commit and base give the
#    same wheel and, with podman, the same image; the image the tags left is
#    removed (unless tagged elsewhere), so rebuilds leave nothing behind.
set -euo pipefail

DEBIAN_SUITE=bookworm # its python3 is 3.11, the Python the wheels are built for
DEBIAN_BASE=localhost/myrouter-bridge-base:${DEBIAN_SUITE}
DEBIAN_MIRROR=http://deb.debian.org

usage() {
    echo "usage: $0 --python PY --version VERSION --source URL [--name NAME]" \
        "[--engine podman|docker] [--base IMAGE|debian] [--embedded-upstream]" >&2
    exit 2
}

python="" version="" source="" name=myrouter-bridge engine="" base="" upstream=false
while [ $# -gt 0 ]; do
    case $1 in
    --python) python=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --source) source=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --engine) engine=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    --embedded-upstream) upstream=true; shift ;;
    *) usage ;;
    esac
done
[ -n "$python" ] && [ -n "$version" ] && [ -n "$source" ] || usage
cd "$(dirname "$0")/../.."

if [ -z "$engine" ]; then
    engine=$(command -v podman || command -v docker || true)
    [ -n "$engine" ] || {
        echo "make image needs podman or docker (apt-get install podman)" >&2
        exit 1
    }
    engine=$(basename "$engine")
fi

image_exists() {
    if [ "$engine" = podman ]; then podman image exists "$1"; else docker image inspect "$1" >/dev/null 2>&1; fi
}

debian_base() {
    if image_exists "$DEBIAN_BASE"; then
        echo "base: $DEBIAN_BASE (cached; remove it to rebuild)" >&2
        return
    fi
    command -v mmdebstrap >/dev/null || {
        echo "the Debian base needs mmdebstrap (apt-get install mmdebstrap)" >&2
        exit 1
    }
    echo "base: building $DEBIAN_BASE from Debian $DEBIAN_SUITE packages" >&2
    # merged-usr without the usrmerge package (which would pull in perl);
    # no documentation, manual pages or translations, as the slim image.
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        "$DEBIAN_SUITE" - \
        "deb $DEBIAN_MIRROR/debian $DEBIAN_SUITE main" \
        "deb $DEBIAN_MIRROR/debian $DEBIAN_SUITE-updates main" \
        "deb $DEBIAN_MIRROR/debian-security $DEBIAN_SUITE-security main" |
        "$engine" import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["python3"]' \
            --message "Debian $DEBIAN_SUITE minbase with python3, python3-venv, ca-certificates" \
            - "$DEBIAN_BASE" >/dev/null
}

default_base=$(sed -n 's/^ARG BASE=//p' Dockerfile)
base=${base:-$default_base}
if [ "$base" = debian ]; then
    debian_base
    base=$DEBIAN_BASE
elif image_exists "$base"; then
    echo "base: $base (present)" >&2
elif "$engine" pull --quiet "$base" >/dev/null; then
    echo "base: $base (pulled)" >&2
else
    echo "base: cannot pull $base; using the Debian equivalent" >&2
    debian_base
    base=$DEBIAN_BASE
fi

SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH
wheels=build/image/wheels
# build/ dirs: setuptools' copies, which may hold deleted modules. The server's wheel
# needs the client's (myrouter-client, the stubs); the embedded upstream's is built too
# and installed only when asked for (IMAGE_EMBEDDED_UPSTREAM=true).
rm -rf "$wheels" build/lib clients/python/build upstream/build
"$python" -m pip wheel --quiet --no-build-isolation --wheel-dir "$wheels" \
    ./clients/python ./upstream .
# Dependencies behind an environment marker that the build's Python skips but the
# base's may need: redis needs async-timeout before Python 3.11.3, and Debian
# bookworm's python3 is 3.11.2. pip resolves markers for the interpreter running it,
# so these are fetched by name (pure-Python wheels).
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$wheels" "async-timeout>=4.0.3,<6"
python_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

build=("$engine" build)
if [ "$engine" = podman ]; then
    # chroot isolation: builds inside containers and sandboxes without their own
    # cgroups; the base is local by now, so never pull (again); no intermediate
    # images kept (a rebuild takes seconds); file and image times from the commit.
    build+=(--isolation=chroot --pull=never --layers=false --timestamp "$SOURCE_DATE_EPOCH")
else
    build+=(--build-arg SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH") # BuildKit's image times
fi
image_id() { "$engine" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
previous=$(image_id "$name:$version")
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
"${build[@]}" --file Dockerfile --tag "$name:latest" --tag "$name:$version" \
    --build-arg BASE="$base" \
    --build-arg PYTHON_VERSION="$python_version" \
    --build-arg EMBEDDED_UPSTREAM="$upstream" \
    --build-arg VERSION="$version" \
    --build-arg REVISION="$revision" \
    --build-arg SOURCE="$source" \
    .
if [ -n "$previous" ] && [ "$previous" != "$(image_id "$name:$version")" ]; then
    "$engine" image rm "$previous" >/dev/null 2>&1 || true # still tagged elsewhere: kept
fi
size=$("$engine" image inspect --format '{{.Size}}' "$name:$version")
echo "image: $name:latest, $name:$version ($((size / 1000000)) MB, base $base)" >&2
