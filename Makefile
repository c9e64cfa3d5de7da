# MyRouter gRPC bridge. `make demo` and `make test` work on a fresh machine:
# both build the virtual environment (.venv) and the generated stubs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PROTO  := protos/myrouter/chat/v1/chat.proto
GEN    := myrouter/chat/v1/chat_pb2.py
# The wheel ships the contract beside the modules generated from it.
GEN_PROTO := myrouter/chat/v1/chat.proto
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

.PHONY: install proto demo test soak bench lint release-contract wheel clean

install: $(VENV)/.installed $(GEN) $(GEN_PROTO) $(TOOLS) $(NODE_EXAMPLE) $(RUBY_EXAMPLE)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
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

$(TOOLS): tools/package-lock.json
	cd tools && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

# google/protobuf/struct.proto comes from grpcio-tools, already in the venv.
$(RUBY_EXAMPLE): $(PROTO) $(VENV)/.installed
	command -v grpc_tools_ruby_protoc >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
		--no-install-recommends $(RUBY_DEBS); }
	mkdir -p examples/ruby/gen
	grpc_tools_ruby_protoc -I protos \
		-I "$$($(PY) -c 'import grpc_tools, os; print(os.path.dirname(grpc_tools.__file__))')/_proto" \
		--ruby_out=examples/ruby/gen --grpc_out=examples/ruby/gen $(PROTO)

# The Node.js example's dependencies (its test runs in `make test`).
$(NODE_EXAMPLE): examples/node/package-lock.json
	cd examples/node && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

demo: install
	$(PY) -m bridge demo

test: install
	$(PY) -m pytest -q -m "not soak"

# The benchmark harness (see BENCHMARKS.md): hot-path micro-benchmarks, then the
# bridge against the direct-HTTP baseline in separate processes; ~3 minutes.
bench: install
	$(PY) -m pytest -q -p no:cacheprovider bench/test_micro.py --benchmark-only \
		--benchmark-json=bench/micro.json --benchmark-columns=min,mean,ops --benchmark-sort=name
	$(PY) bench/run.py

# 1,000 streams (200 at a time) through one bridge process; prints the RSS figures.
soak: install
	$(PY) -m pytest -q -s -m soak tests/test_soak.py

# The contract (buf lint with the STANDARD rules, buf format, no breaking change
# against the released image), the example clients' syntax, then Python: ruff, mypy
# strict on bridge/ and myrouter_client/, and on tests/ every body type-checked
# (check_untyped_defs) with annotations optional.
lint: install
	$(BUF) lint protos
	$(BUF) format --diff --exit-code protos
	$(BUF) breaking protos --against $(RELEASED_CONTRACT)
	node --check examples/node/client.js
	ruby -wc examples/ruby/client.rb
	$(VENV)/bin/ruff check bridge myrouter_client tests bench
	$(VENV)/bin/ruff format --check bridge myrouter_client tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests --allow-untyped-defs --allow-incomplete-defs \
		--allow-untyped-calls --check-untyped-defs

# dist/myrouter_bridge-*.whl: the bridge, the generated stubs with their .pyi and
# chat.proto, and the myrouter_client helper; what a Python caller pip-installs.
wheel: install
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

# Run when a contract change is released: later changes are checked against it.
release-contract: $(TOOLS)
	$(BUF) build protos --exclude-source-info -o $(RELEASED_CONTRACT)

clean:
	rm -rf $(VENV) myrouter build dist *.egg-info .pytest_cache tools/node_modules \
		examples/node/node_modules examples/ruby/gen

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

image: $(GEN) $(GEN_PROTO)
	deploy/image/build.sh --python $(PY) --version $(IMAGE_VERSION) --source $(IMAGE_SOURCE) \
		--name $(IMAGE_NAME) $(if $(IMAGE_BASE),--base $(IMAGE_BASE)) \
		$(if $(IMAGE_ENGINE),--engine $(IMAGE_ENGINE)) $(IMAGE_UPSTREAM_FLAG)

# Builds the image, then runs its own entrypoint as the manifest does (read-only root,
# /tmp only, uid 10001) through a real call, health, SIGTERM and drain; needs root and
# podman (`podman image mount`). Then the checks of the built image against the manifest.
image-test: image
	$(PY) deploy/image/smoke.py --image $(IMAGE_NAME):$(IMAGE_VERSION) $(IMAGE_UPSTREAM_FLAG)
	$(PY) -m pytest -q tests -k built_image
