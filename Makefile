# skymesh: `make demo` starts the local mesh, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DEBIAN_FRONTEND := noninteractive

.PHONY: demo test fuzz install install-test etcd deploy-tools browser proto bench down clean

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

# What the deployment's tests (tests/unit/deploy) check with: systemd-analyze, shellcheck and
# promtool (Debian's prometheus package) from Debian's packages, and cloud-init's schema taken
# out of its package (installing cloud-init would add its boot services to this machine).
CLOUD_INIT_SCHEMA := .cache/cloud-init-schema.json
deploy-tools: $(CLOUD_INIT_SCHEMA)
	@command -v systemd-analyze >/dev/null 2>&1 && command -v shellcheck >/dev/null 2>&1 && \
	  command -v promtool >/dev/null 2>&1 || { \
	  echo "installing systemd, shellcheck and prometheus (promtool) from Debian's packages"; \
	  apt-get update -qq && apt-get install -y -qq systemd shellcheck prometheus >/dev/null; }

$(CLOUD_INIT_SCHEMA):
	@echo "taking cloud-init's schema out of Debian's cloud-init package"
	@rm -rf .cache/deb && mkdir -p .cache/deb && cd .cache/deb && \
	  { apt-get download -qq cloud-init 2>/dev/null || \
	    { apt-get update -qq && apt-get download -qq cloud-init; }; } && \
	  dpkg-deb --fsys-tarfile cloud-init_*.deb | tar -xO \
	    ./usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json \
	    > ../cloud-init-schema.json.part
	@mv .cache/cloud-init-schema.json.part $(CLOUD_INIT_SCHEMA) && rm -rf .cache/deb

# Debian's chromium, which the dashboard's browser test drives through playwright (browsers
# cannot be downloaded here, and playwright never installs one)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium from Debian's packages (the dashboard's browser test)"; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Two pytest runs at once: the tests that start a mesh or a benchmark (marked `mesh`) one
# after another as ever, and beside them the rest (unit tests, and integration tests of a
# controller, a relay or etcd), whose report is printed after. Two meshes of a dozen
# processes at once on two cores would time each other out; a mesh beside them does not.
test: install-test etcd deploy-tools browser
	$(VENV)/bin/ruff check .
	@$(PY) -m pytest -q -p no:cacheprovider -m "not mesh" > .beside-tests.log 2>&1 & \
	  beside=$$!; \
	  $(PY) -m pytest -q -m mesh; meshes=$$?; \
	  wait $$beside; others=$$?; \
	  echo "--- the tests that start no mesh:"; cat .beside-tests.log; rm -f .beside-tests.log; \
	  test $$meshes -eq 0 -a $$others -eq 0

# hostile input for every decoder and loader (tests/unit/fuzz/) and the token verifier:
# 20000 random inputs a test (the normal suite tries 200-300, always the same);
# FUZZ_EXAMPLES=... to change
FUZZ_EXAMPLES ?= 20000
fuzz: install-test
	SKYMESH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/unit/fuzz \
	  tests/unit/skymesh/test_token.py -k "fuzz or arbitrary or mutated" -q \
	  --hypothesis-show-statistics

proto: $(PY)
	$(PY) -m pip install --quiet grpcio-tools
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. --pyi_out=. \
	  proto/skymesh/v1/*.proto

bench: install-test
	$(PY) bench/routing.py
	$(PY) bench/mesh_accuracy.py --count 30
	$(PY) bench/resolve_accuracy.py
	$(PY) bench/relay.py
	$(PY) bench/failover.py
	$(PY) bench/token_verify.py
	$(PY) bench/control_plane.py
	$(PY) bench/replicas.py
	$(PY) bench/resolver.py
	$(PY) bench/join_time.py
	$(PY) bench/interaction.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
