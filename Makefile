# MyRouter gRPC bridge. `make demo` needs only Python 3.11+, make and git (no root, no
# Node, no Ruby): it builds the virtual environment (.venv) with the bridge's runtime
# and the stub generator, and the generated stubs. `make test` adds the dev tools and
# runs the suite, including the Node and Ruby parts where those toolchains exist.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet
PROTO  := protos/myrouter/chat/v1/chat.proto
GEN    := myrouter/chat/v1/chat_pb2.py
# The client wheel ships the contract beside the modules generated from it, and marks
# the stubs typed (PEP 561), so a caller's mypy reads their .pyi files.
GEN_PROTO := myrouter/chat/v1/chat.proto
GEN_TYPED := myrouter/py.typed
# The caller's distribution (myrouter-client: stubs, contract, helper) and the embedded
# upstream's (myrouter-upstream: the fake API and the demo); see their pyproject files.
CLIENT := clients/python
UPSTREAM := upstream
# Node tools (buf) are pinned in tools/package-lock.json and installed locally by `npm ci`.
NPM    ?= npm
BUF    := tools/node_modules/.bin/buf
TOOLS  := tools/node_modules/.installed
NODE_EXAMPLE := examples/node/node_modules/.installed
# The Ruby example uses Debian's grpc gem (ruby-grpc, with protoc 3.21 and its Ruby
# plugin in ruby-grpc-tools); its stubs are generated from protos/ into gen/.
RUBY_DEBS    := ruby-grpc ruby-grpc-tools ruby-googleapis-common-protos-types
RUBY_EXAMPLE := examples/ruby/gen/myrouter/chat/v1/chat_services_pb.rb
# The contract as last released; `make release-contract` rewrites it, on purpose only.
RELEASED_CONTRACT := protos/released-image.json
# REQUIRE_ALL=1 (CI): a toolchain that is missing fails `make test` and `make lint`
# instead of being skipped; the test suite reads the same variable.
REQUIRE_ALL ?=
export REQUIRE_ALL
STRICT := $(filter-out 0,$(strip $(REQUIRE_ALL)))
# $(call skip,what,why): one line naming what is left out and why; under REQUIRE_ALL a failure.
skip = echo "$(if $(STRICT),REQUIRE_ALL=$(STRICT): cannot set up,skipping) $(1): $(2)" >&2; \
	[ -z "$(STRICT)" ]

.PHONY: install dev proto docs tools node-example ruby-example toolchain-deps demo test \
	test-unit soak bench lint release-contract wheel clean

# The runtime, the stub generator, the three projects in editable mode, and the stubs.
# setuptools' default editable mode serves all three: the two whose sources sit in the
# repository root (package-dir) get a plain path entry for it, so the stubs that
# `make proto` generates after this install are importable too.
install: $(VENV)/.installed $(GEN) $(GEN_PROTO) $(GEN_TYPED)

$(VENV)/.installed: pyproject.toml $(CLIENT)/pyproject.toml $(UPSTREAM)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e ./$(CLIENT) -e ./$(UPSTREAM) -e '.[codegen]'
	touch $@

# Everything test, lint and bench use: pytest, mypy, ruff, OpenTelemetry, ...
dev: install $(VENV)/.dev

$(VENV)/.dev: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

# What `make wheel` builds with (no build isolation, so no download per wheel): the
# build-system requirements of pyproject.toml, read from it, and nothing else.
$(VENV)/.build: $(VENV)/.installed pyproject.toml
	$(PIP) $$($(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))\
		["build-system"]["requires"])')
	touch $@

# The one command that produces the generated code (never edited by hand).
proto: $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --grpc_python_out=. \
		--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy --mypy_out=. \
		--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=. \
		$(PROTO)

$(GEN): $(PROTO) $(VENV)/.installed
	$(MAKE) proto

$(GEN_PROTO): $(PROTO) $(GEN)
	cp $(PROTO) $@

$(GEN_TYPED): $(GEN)
	touch $@

# buf, for `make lint` and `make release-contract` (needs Node.js and npm).
tools: $(TOOLS)

$(TOOLS): tools/package-lock.json
	cd tools && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

# The Node.js example's dependencies (needs Node.js and npm).
node-example: $(NODE_EXAMPLE)

$(NODE_EXAMPLE): examples/node/package-lock.json
	cd examples/node && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

# The Ruby example's stubs. Debian's grpc gems are installed when they are missing and
# this runs as root; otherwise it says what to install.
# google/protobuf/struct.proto comes from grpcio-tools, already in the venv.
ruby-example: $(RUBY_EXAMPLE)

$(RUBY_EXAMPLE): $(PROTO) $(VENV)/.installed
	@command -v grpc_tools_ruby_protoc >/dev/null || [ "$$(id -u)" != 0 ] || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		-o DPkg::Lock::Timeout=300 --no-install-recommends $(RUBY_DEBS); }
	@command -v grpc_tools_ruby_protoc >/dev/null || { echo "ruby-example: \
	grpc_tools_ruby_protoc not found; install the Debian packages $(RUBY_DEBS) \
	(or run this as root, which installs them)" >&2; exit 1; }
	mkdir -p examples/ruby/gen
	grpc_tools_ruby_protoc -I protos \
		-I "$$($(PY) -c 'import grpc_tools, os; print(os.path.dirname(grpc_tools.__file__))')/_proto" \
		--ruby_out=examples/ruby/gen --grpc_out=examples/ruby/gen $(PROTO)

# What `make test` needs from the other toolchains, set up where the toolchain exists;
# each one missing is named here, and the tests that need it skip saying why.
toolchain-deps:
	@if command -v $(NPM) >/dev/null; then $(MAKE) --no-print-directory tools node-example; \
	else $(call skip,buf and the Node example,$(NPM) not on PATH); fi
	@if ! command -v ruby >/dev/null; then $(call skip,the Ruby example,ruby not on PATH); \
	elif command -v grpc_tools_ruby_protoc >/dev/null || [ "$$(id -u)" = 0 ]; then \
		$(MAKE) --no-print-directory ruby-example; \
	else $(call skip,the Ruby example,grpc_tools_ruby_protoc not on PATH \
		(Debian packages $(RUBY_DEBS); as root, make ruby-example installs them)); fi

# The Go example: the protoc commands of docs/clients.md, then `go build` in GOPATH mode from
# Debian's Go packages (.ci/run installs them), into examples/go/gen/bin/client.
# tests/toolchains/test_go_example.py builds its own copy in a temporary directory.
.PHONY: go-example
go-example:
	bash examples/go/build.sh

# The Java example: pom.xml's dependencies resolved from Debian's Maven repository
# (/usr/share/maven-repo; .ci/run installs the packages), the protoc command of
# docs/clients.md, then javac, into examples/java/gen/bin/client. The venv supplies
# google/rpc/error_details.proto, which Debian's Java common protos predate.
# tests/toolchains/test_java_example.py builds its own copy in a temporary directory.
.PHONY: java-example
java-example: $(VENV)/.installed
	bash examples/java/build.sh

# docs/configuration.md, generated from the settings in bridge/config.py (never edited by
# hand; tests/unit/test_config.py fails when it is stale).
docs: install
	$(PY) -m bridge.config --markdown > docs/configuration.md.tmp
	mv docs/configuration.md.tmp docs/configuration.md

demo: install
	$(PY) -m myrouter_upstream.demo

# Every test but the soak: tests/unit (pure), tests/integration (the bridge, the
# embedded upstream and child processes over loopback), tests/toolchains (the wheels,
# Node, Ruby, Go, Java, buf, the deploy manifests); ~5-6 minutes on 2 cores. Tests whose toolchain
# (Node, Ruby, Go, Java, root) is missing skip with the reason in the summary (pytest -ra),
# and fail instead under REQUIRE_ALL.
test: dev toolchain-deps
	$(PY) -m pytest -q -m "not soak"

# tests/unit alone: pure code, no socket, no subprocess, no server (its conftest
# refuses them); needs only the venv and the stubs; ~1 minute on 2 cores, most
# of it the hypothesis property tests of mapping and sse.
test-unit: $(VENV)/.installed $(GEN) $(GEN_PROTO)
	$(PY) -m pytest -q tests/unit

# The benchmark harness (see BENCHMARKS.md): hot-path micro-benchmarks, then the
# bridge against the direct-HTTP baseline in separate processes: closed-loop pairs,
# unary and streams in open loop, capacity, scale. bench/run.py builds the compiled
# load client first (bench/goload/build.sh, Go from Debian's packages as .ci/run
# installs them; its rows are skipped, saying why, without them); ~9 minutes: 8 min 47 s
# from a fresh clone with the venv, before the callers phase (~65 s) was added.
bench: dev
	$(PY) -m pytest -q -p no:cacheprovider bench/test_micro.py --benchmark-only \
		--benchmark-json=bench/micro.json --benchmark-columns=min,mean,ops --benchmark-sort=name
	$(PY) bench/run.py

# 1,000 streams (200 at a time) through one bridge process; prints the RSS figures. Then
# the status property suite (part of `make test` with 300 calls) with 10,000 calls.
soak: dev
	$(PY) -m pytest -q -s -m soak tests/integration/test_soak.py
	BRIDGE_PROPERTY_EXAMPLES=10000 $(PY) -m pytest -q tests/integration/test_status_properties.py

# The contract (buf lint with the STANDARD rules, buf format, no breaking change
# against the released image), the example clients' syntax, then Python: ruff, mypy
# strict on bridge/, myrouter_client/ and myrouter_upstream/, and on tests/ every
# body type-checked (check_untyped_defs) with annotations optional.
lint: dev tools
	$(BUF) lint protos
	$(BUF) format --diff --exit-code protos
	$(BUF) breaking protos --against $(RELEASED_CONTRACT)
	node --check examples/node/client.js
	@if command -v ruby >/dev/null; then ruby -wc examples/ruby/client.rb; \
	else $(call skip,ruby -wc examples/ruby/client.rb,ruby not on PATH); fi
	$(VENV)/bin/ruff check bridge myrouter_client myrouter_upstream tests bench examples/java conftest.py
	$(VENV)/bin/ruff format --check bridge myrouter_client myrouter_upstream tests bench examples/java \
		conftest.py
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests --allow-untyped-defs --allow-incomplete-defs \
		--allow-untyped-calls --check-untyped-defs

# dist/myrouter_client-*.whl: the generated stubs with their .pyi and chat.proto, and
# the myrouter_client helper, needing only grpcio, protobuf and googleapis-common-protos;
# what a Python caller pip-installs. dist/myrouter_bridge-*.whl: the server, which
# depends on that client wheel. dist/myrouter_upstream-*.whl: the embedded upstream, for
# a caller's own tests (aiohttp and orjson only).
# setuptools' build/ dirs are removed first: a module deleted from the tree would
# otherwise still ship from a stale build/lib.
wheel: install $(VENV)/.build
	rm -rf build $(CLIENT)/build $(UPSTREAM)/build
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist ./$(CLIENT) \
		./$(UPSTREAM) .

# Run when a contract change is released: later changes are checked against it.
release-contract: $(TOOLS)
	$(BUF) build protos --exclude-source-info -o $(RELEASED_CONTRACT)

clean:
	rm -rf $(VENV) myrouter build $(CLIENT)/build $(UPSTREAM)/build dist *.egg-info .pytest_cache tools/node_modules \
		examples/node/node_modules examples/ruby/gen examples/go/gen examples/java/gen bench/goload/gen

# The container image (Dockerfile; docs/image.md): built with podman, or docker when
# podman is absent, from wheels built here; tagged $(IMAGE_NAME):latest and
# $(IMAGE_NAME):$(IMAGE_VERSION), the name deploy/kubernetes/bridge.yaml runs.
# IMAGE_BASE=debian builds on the Debian base (made with mmdebstrap, cached), which
# is also what happens when the default base (python:3.11-slim) cannot be pulled.
# IMAGE_EMBEDDED_UPSTREAM=true adds the embedded upstream (left out by default).
IMAGE_NAME    ?= myrouter-bridge
IMAGE_VERSION  = $(shell $(PYTHON) -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
IMAGE_BASE    ?=
IMAGE_ENGINE  ?=
IMAGE_EMBEDDED_UPSTREAM ?= false
# The OCI source label: the clone's remote when it is a URL, else the project's home.
IMAGE_SOURCE  ?= $(or $(shell git remote get-url origin 2>/dev/null | grep -E '^(https?|ssh)://|^git@'),https://git.myrouter.example/myrouter/bridge)
IMAGE_UPSTREAM_FLAG := $(if $(filter true,$(IMAGE_EMBEDDED_UPSTREAM)),--embedded-upstream)

.PHONY: image image-test

image: $(GEN) $(GEN_PROTO) $(GEN_TYPED)
	deploy/image/build.sh --python $(PY) --version $(IMAGE_VERSION) --source $(IMAGE_SOURCE) \
		--name $(IMAGE_NAME) $(if $(IMAGE_BASE),--base $(IMAGE_BASE)) \
		$(if $(IMAGE_ENGINE),--engine $(IMAGE_ENGINE)) $(IMAGE_UPSTREAM_FLAG)

# Builds the image, then runs its own entrypoint as the manifest does (read-only root,
# /tmp only, uid 10001) through a real call, health, SIGTERM and drain; needs root and
# podman (`podman image mount`). Then the checks of the built image against the manifest.
image-test: image
	$(PY) deploy/image/smoke.py --image $(IMAGE_NAME):$(IMAGE_VERSION) $(IMAGE_UPSTREAM_FLAG)
	$(PY) -m pytest -q tests -k built_image
