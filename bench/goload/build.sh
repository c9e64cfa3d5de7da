#!/usr/bin/env bash
# Builds the benchmark's compiled load generator offline from Debian's Go packages:
#
#   bench/goload/build.sh [BUILD_DIR]      # default: bench/goload/gen
#
# leaves BUILD_DIR/bin/goload. GOPATH mode, as examples/go/build.sh explains: Debian
# ships grpc-go and protobuf as sources under /usr/share/gocode, and no module proxy
# is reachable. BUILD_DIR is a GOPATH workspace; src/myrouter.bench/goload holds
# main.go and the stubs protoc generates from protos/.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
protos="$(cd "$here/../../protos" && pwd)"
build="${1:-$here/gen}"
gocode=/usr/share/gocode
if ! grep -qs 'google.golang.org/protobuf' "$gocode/src/github.com/golang/protobuf/go.mod"; then
    echo "$0: $gocode/src/github.com/golang/protobuf is missing or the 1.3 API;" \
        "install golang-github-golang-protobuf-1-5-dev (see examples/go/README.md)" >&2
    exit 1
fi
mkdir -p "$build"
build="$(cd "$build" && pwd)"
app="$build/src/myrouter.bench/goload"
mkdir -p "$app/gen"
cp "$here/main.go" "$app/"
protoc -I "$protos" --go_out="$app/gen" --go_opt=paths=source_relative \
    --go_opt=Mmyrouter/chat/v1/chat.proto=myrouter.bench/goload/gen/myrouter/chat/v1 \
    --go-grpc_out="$app/gen" --go-grpc_opt=paths=source_relative \
    --go-grpc_opt=Mmyrouter/chat/v1/chat.proto=myrouter.bench/goload/gen/myrouter/chat/v1 \
    "$protos"/myrouter/chat/v1/chat.proto
cd "$app"
GO111MODULE=off GOPROXY=off GOFLAGS= \
    GOPATH="$build:$gocode" \
    GOCACHE="${GOCACHE:-$build/cache}" \
    go build -o "$build/bin/goload" myrouter.bench/goload
