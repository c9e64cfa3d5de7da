#!/usr/bin/env bash
# Builds the Go example offline from Debian's packaged Go sources:
#
#   examples/go/build.sh [BUILD_DIR]      # default: examples/go/gen
#
# leaves BUILD_DIR/bin/client. BUILD_DIR is a GOPATH workspace (tools/go-gopath.sh says
# why), src/example.com/yourapp/ holds main.go and the stubs that docs/clients.md's protoc
# commands generate there.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../../tools/go-gopath.sh" "${1:-}"
gopath_package example.com/yourapp
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

gopath_build "$build/bin/client" example.com/yourapp
