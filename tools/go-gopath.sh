# Sourced (never run) by examples/go/build.sh and bench/goload/build.sh: the GOPATH
# workspace both build in, offline, from Debian's packaged Go sources.
#
#   here=<the script's folder>; . tools/go-gopath.sh "${1:-}"
#   gopath_package IMPORT_PATH; <generate the stubs>; gopath_build OUT IMPORT_PATH
#
# Why GOPATH mode: Debian ships grpc-go, protobuf and genproto as sources under
# /usr/share/gocode (what its own packages build with), not as a module cache, and there
# is no module proxy to fetch the rest of grpc's go.mod graph from. So BUILD_DIR (the
# argument, default "$here/gen") is a GOPATH workspace, and
# GOPATH=BUILD_DIR:/usr/share/gocode resolves every import. Sets `protos` (the contract's
# folder), `gocode` and `build` (BUILD_DIR made and absolute); exits when the packaged
# github.com/golang/protobuf is missing or too old.

protos="$(cd "$(dirname "${BASH_SOURCE[0]}")/../protos" && pwd)"
build="${1:-$here/gen}"
gocode=/usr/share/gocode
# genproto and grpc accept either API of github.com/golang/protobuf, and apt may pick
# 1.3: the build then succeeds and the first call panics ("protobuf tag not enough
# fields"). The 1.4+ API is a wrapper over google.golang.org/protobuf.
if ! grep -qs 'google.golang.org/protobuf' "$gocode/src/github.com/golang/protobuf/go.mod"; then
    echo "$0: $gocode/src/github.com/golang/protobuf is missing or the 1.3 API;" \
        "install golang-github-golang-protobuf-1-5-dev (see examples/go/README.md)" >&2
    exit 1
fi
mkdir -p "$build"
build="$(cd "$build" && pwd)"

# gopath_package IMPORT_PATH: the package's folder in the workspace, BUILD_DIR/src/IMPORT_PATH,
# made, with the calling script's main.go copied in; sets `app` to it.
gopath_package() {
    app="$build/src/$1"
    mkdir -p "$app"
    cp "$here/main.go" "$app/"
}

# gopath_build OUT IMPORT_PATH: `go build -o OUT IMPORT_PATH` in that workspace; GOCACHE is the
# caller's when set, else one inside BUILD_DIR (HOME may be unwritable).
gopath_build() {
    GO111MODULE=off GOPROXY=off GOFLAGS= \
        GOPATH="$build:$gocode" \
        GOCACHE="${GOCACHE:-$build/cache}" \
        go build -o "$1" "$2"
}
