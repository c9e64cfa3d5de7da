# MyRouter gRPC bridge. `make demo` and `make test` work on a fresh machine:
# both build the virtual environment (.venv) and the generated stubs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PROTO  := protos/myrouter/chat/v1/chat.proto
GEN    := myrouter/chat/v1/chat_pb2.py

.PHONY: install proto demo test soak bench lint clean

install: $(VENV)/.installed $(GEN)

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

demo: install
	$(PY) -m bridge demo

test: install
	$(PY) -m pytest -q -m "not soak"

lint: install
	$(VENV)/bin/ruff check bridge tests
	$(VENV)/bin/ruff format --check bridge tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) myrouter build *.egg-info .pytest_cache
