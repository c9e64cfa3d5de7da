#!/usr/bin/env bash
# Builds the benchmark's compiled load generator offline from Debian's Go packages:
#
#   bench/goload/build.sh [BUILD_DIR]      # default: bench/goload/gen
#
# leaves BUILD_DIR/bin/goload. BUILD_DIR is a GOPATH workspace (tools/go-gopath.sh says
# why); src/myrouter.bench/goload holds main.go and the stubs protoc generates from protos/.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../../tools/go-gopath.sh" "${1:-}"
gopath_package myrouter.bench/goload
mkdir -p "$app/gen"
protoc -I "$protos" --go_out="$app/gen" --go_opt=paths=source_relative \
    --go_opt=Mmyrouter/chat/v1/chat.proto=myrouter.bench/goload/gen/myrouter/chat/v1 \
    --go-grpc_out="$app/gen" --go-grpc_opt=paths=source_relative \
    --go-grpc_opt=Mmyrouter/chat/v1/chat.proto=myrouter.bench/goload/gen/myrouter/chat/v1 \
    "$protos"/myrouter/chat/v1/chat.proto
cd "$app"
gopath_build "$build/bin/goload" myrouter.bench/goload
