#!/usr/bin/env bash
# Builds the Java example offline from Debian's Java packages, the way `mvn package`
# would with pom.xml, without Maven or a network:
#
#   examples/java/build.sh [BUILD_DIR]      # default: examples/java/gen
#
# leaves BUILD_DIR/bin/client, a launcher for BUILD_DIR/classes. The dependencies are
# pom.xml's own coordinates, resolved with their transitive ones by classpath.py from
# /usr/share/maven-repo (Debian's jars laid out as a Maven repository).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
protos="$(cd "$here/../../protos" && pwd)"
python="${PYTHON:-$here/../../.venv/bin/python}"
[ -x "$python" ] || python=python3
build="${1:-$here/gen}"
mkdir -p "$build"
build="$(cd "$build" && pwd)"
cd "$build"

compile_cp="$("$python" "$here/classpath.py" compile "$here/pom.xml")"
runtime_cp="$("$python" "$here/classpath.py" runtime "$here/pom.xml")"

# The protoc command of docs/clients.md as written, after the folder it writes to (protoc
# does not create it); tests/toolchains/test_java_example.py keeps the two equal. grpc-java
# releases name the plugin protoc-gen-grpc-java; Debian's protobuf-compiler-grpc-java-plugin
# installs it as grpc_java_plugin. google/protobuf/struct.proto is libprotobuf-dev's.
grpc_java="$(command -v protoc-gen-grpc-java || command -v grpc_java_plugin)"
rm -rf gen/java classes
mkdir -p gen/java
protoc -I "$protos" --java_out=gen/java --plugin=protoc-gen-grpc-java="$grpc_java" \
    --grpc-java_out=gen/java "$protos"/myrouter/chat/v1/chat.proto

# Debian 12's proto-google-common-protos is 1.16, older than google.rpc.ErrorInfo (2.x
# has it): then generate google/rpc/error_details.proto (googleapis-common-protos, in
# the venv) with the same protoc, and put its classes first on the classpath. A Maven
# build against Maven Central needs none of this.
common_protos="$(tr ':' '\n' <<<"$compile_cp" | grep /proto-google-common-protos/)"
if ! jar tf "$common_protos" | grep -qx com/google/rpc/ErrorInfo.class; then
    googleapis="$("$python" -c 'import pathlib, google.rpc.error_details_pb2 as m
print(pathlib.Path(m.__file__).parents[2])' 2>/dev/null)" || {
        echo "$0: $python has no googleapis-common-protos (google/rpc/error_details.proto);" \
            "run make install, or set PYTHON to a Python that has it" >&2
        exit 1
    }
    protoc -I "$googleapis" --java_out=gen/java "$googleapis"/google/rpc/error_details.proto
fi

javac -d classes --release 17 -encoding UTF-8 -nowarn -cp "$compile_cp" \
    $(find gen/java "$here/src/main/java" -name '*.java')

mkdir -p bin
cat >bin/client <<LAUNCHER
#!/bin/sh
exec java -cp '$build/classes:$runtime_cp' com.example.yourapp.Client "\$@"
LAUNCHER
chmod +x bin/client
