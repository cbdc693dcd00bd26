# skymesh: `make demo` starts the local mesh, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DEBIAN_FRONTEND := noninteractive

.PHONY: demo test install install-test etcd proto bench down clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

install: $(PY)
	$(PY) -m pip install --quiet -e .

install-test: $(PY)
	$(PY) -m pip install --quiet -e '.[test]'

demo: install
	$(VENV)/bin/skymesh up --demo

down:
	$(VENV)/bin/skymesh down

etcd:
	@command -v etcd >/dev/null 2>&1 || { \
	  echo "installing etcd-server from Debian's packages"; \
	  apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null; }

test: install-test etcd
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

proto: $(PY)
	$(PY) -m pip install --quiet grpcio-tools
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. \
	  proto/skymesh/v1/*.proto

bench: install-test
	$(PY) bench/routing.py
	$(PY) bench/mesh_accuracy.py --count 30
	$(PY) bench/relay.py
	$(PY) bench/failover.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
