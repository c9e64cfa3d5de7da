#!/usr/bin/env bash
# Builds the Go example offline from Debian's packaged Go sources:
#
#   examples/go/build.sh [BUILD_DIR]      # default: examples/go/gen
#
# leaves BUILD_DIR/bin/client. Why GOPATH mode: Debian ships grpc-go, protobuf and
# genproto as sources under /usr/share/gocode (what its own packages build with),
# not as a module cache, and there is no module proxy to fetch the rest of grpc's
# go.mod graph from. So BUILD_DIR is a GOPATH workspace, src/example.com/yourapp/
# holds main.go and the stubs that docs/clients.md's protoc commands generate there,
# and GOPATH=BUILD_DIR:/usr/share/gocode resolves every import.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
protos="$(cd "$here/../../protos" && pwd)"
build="${1:-$here/gen}"
gocode=/usr/share/gocode
# genproto and grpc accept either API of github.com/golang/protobuf, and apt may pick
# 1.3: the build then succeeds and the first call panics ("protobuf tag not enough
# fields"). The 1.4+ API is a wrapper over google.golang.org/protobuf.
if ! grep -qs 'google.golang.org/protobuf' "$gocode/src/github.com/golang/protobuf/go.mod"; then
    echo "$0: $gocode/src/github.com/golang/protobuf is missing or the 1.3 API;" \
        "install golang-github-golang-protobuf-1-5-dev (see README.md)" >&2
    exit 1
fi
mkdir -p "$build"
build="$(cd "$build" && pwd)"
app="$build/src/example.com/yourapp"

mkdir -p "$app"
cp "$here/main.go" "$app/"
cd "$app"

# The protoc command of docs/clients.md as written, after the folder it writes to (protoc does not
# create it); tests/test_go_example.py keeps the two equal. google/protobuf/struct.proto
# comes with protoc: Debian's protobuf-compiler ships it in /usr/include.
mkdir -p gen/go
protoc -I "$protos" --go_out=gen/go --go_opt=paths=source_relative \
    --go_opt=Mmyrouter/chat/v1/chat.proto=example.com/yourapp/gen/go/myrouter/chat/v1 \
    --go-grpc_out=gen/go --go-grpc_opt=paths=source_relative \
    --go-grpc_opt=Mmyrouter/chat/v1/chat.proto=example.com/yourapp/gen/go/myrouter/chat/v1 \
    "$protos"/myrouter/chat/v1/chat.proto

# GOCACHE: the caller's when set, else one inside BUILD_DIR (HOME may be unwritable).
GO111MODULE=off GOPROXY=off GOFLAGS= \
    GOPATH="$build:$gocode" \
    GOCACHE="${GOCACHE:-$build/cache}" \
    go build -o "$build/bin/client" example.com/yourapp
