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

.PHONY: install proto demo test test-unit soak bench lint release-contract wheel clean

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

# The Go example: the README's protoc commands, then `go build` in GOPATH mode from
# Debian's Go packages (.ci/run installs them), into examples/go/gen/bin/client.
# tests/test_go_example.py builds its own copy in a temporary directory.
.PHONY: go-example
go-example:
	bash examples/go/build.sh

demo: install
	$(PY) -m myrouter_upstream.demo

# Everything but the soak: tests/unit (pure), tests/integration (the bridge, the
# embedded upstream and child processes over loopback), tests/toolchains (the wheel,
# Node, Ruby, buf, the deploy manifests); ~2-4 minutes.
test: install
	$(PY) -m pytest -q -m "not soak"

# tests/unit alone: pure code, no socket, no subprocess, no server (its conftest
# refuses them); needs only the venv and the stubs; ~20 seconds on 2 cores, most
# of it the hypothesis property tests of mapping and sse.
test-unit: $(VENV)/.installed $(GEN) $(GEN_PROTO)
	$(PY) -m pytest -q tests/unit

# The benchmark harness (see BENCHMARKS.md): hot-path micro-benchmarks, then the
# bridge against the direct-HTTP baseline in separate processes: closed-loop pairs,
# unary and streams in open loop, capacity, scale. bench/run.py builds the compiled
# load client first (bench/goload/build.sh, Go from Debian's packages as .ci/run
# installs them; its rows are skipped, saying why, without them); ~6 minutes.
bench: install
	$(PY) -m pytest -q -p no:cacheprovider bench/test_micro.py --benchmark-only \
		--benchmark-json=bench/micro.json --benchmark-columns=min,mean,ops --benchmark-sort=name
	$(PY) bench/run.py

# 1,000 streams (200 at a time) through one bridge process; prints the RSS figures.
soak: install
	$(PY) -m pytest -q -s -m soak tests/integration/test_soak.py

# The contract (buf lint with the STANDARD rules, buf format, no breaking change
# against the released image), the example clients' syntax, then Python: ruff, mypy
# strict on bridge/, myrouter_client/ and myrouter_upstream/, and on tests/ every
# body type-checked (check_untyped_defs) with annotations optional.
lint: install
	$(BUF) lint protos
	$(BUF) format --diff --exit-code protos
	$(BUF) breaking protos --against $(RELEASED_CONTRACT)
	node --check examples/node/client.js
	ruby -wc examples/ruby/client.rb
	$(VENV)/bin/ruff check bridge myrouter_client myrouter_upstream tests bench
	$(VENV)/bin/ruff format --check bridge myrouter_client myrouter_upstream tests bench
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
		examples/node/node_modules examples/ruby/gen bench/goload/gen
