# musewise: set-up, demo and tests on a fresh Debian machine.
#   make demo   simulate a night, ingest it, reduce it with the ESO MUSE pipeline, start the hub
#   make test   the whole test suite (SQLite and PostgreSQL, real pipeline, real hub, headless Chromium)
# Both install what they need: Debian packages (as root), a virtualenv from pyproject.toml,
# and the npm packages of package.json (configurable-http-proxy).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
IFUS ?= 2
DEMO_ROOT ?= $(CURDIR)/demo
PYTEST_ARGS ?=
STAMP := $(VENV)/.stamps
# python3-venv/-dev: a Debian python3 needs them for the virtualenv; esorex + cpl-plugin-muse:
# the ESO MUSE pipeline; postgresql: the shared-site database the tests run against;
# chromium: the headless browser of the page and widget tests; graphviz: the dot program that draws
# provenance graphs; source-extractor: SExtractor, which MUSELET (step sources) runs on every narrow band;
# python3-gavo + postgresql-15-pgsphere + postgresql-15-q3c: GAVO DaCHS, the VO server of the releases
# (musewise.vo); its init needs both extensions (without q3c it rolls back pgSphere too);
# nodejs/npm: configurable-http-proxy.
APT_PACKAGES := esorex cpl-plugin-muse postgresql chromium graphviz source-extractor python3-gavo \
	postgresql-15-pgsphere postgresql-15-q3c slurm-wlm munge
# Installed only when the command is missing (a machine may have its own Python or Node.js).
APT_IF_MISSING := "$(PYTHON) -c 'import ensurepip'":python3-venv "npm --version":npm

.PHONY: test-long demo test test-fast bench bench-jdaviz-env setup system venv node clean help

help:
	@sed -n '2,5p' Makefile

setup: system venv node

system: $(STAMP)/system
# Re-checked when this file changes (a new package in APT_PACKAGES reaches machines already set up).
$(STAMP)/system: Makefile
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done; \
	  for pair in $(APT_IF_MISSING); do eval "$${pair%:*}" >/dev/null 2>&1 || echo $${pair##*:}; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo ">> installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "musewise needs these Debian packages, which only root can install:"; \
	    echo "    sudo apt-get install -y $$missing"; exit 1; \
	  fi; \
	fi
	@mkdir -p $(STAMP) && touch $@

venv: $(STAMP)/venv
$(STAMP)/venv: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel setuptools
	$(PY) -m pip install -q -e '.[all]'
	$(PY) -m musewise.kernel  # the kernel of MusewiseConfig.kernel_name, in $(VENV)/share/jupyter/kernels
	@mkdir -p $(STAMP) && touch $@

node: $(STAMP)/node
$(STAMP)/node: package.json package-lock.json
	if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi
	@mkdir -p $(STAMP) && touch $@

demo: setup
	$(PY) -m musewise.demo --root $(DEMO_ROOT) --ifus $(IFUS)

test: setup
	$(VENV)/bin/pytest -ra --durations=15 -m "not long" $(PYTEST_ARGS)

# The whole-field tests: the 2-night field reduced once for the session (tests/fieldfixture.py,
# ~20 min to build on 2 loaded cores, its checks ~3 min more) and ZAP after a cascade.
test-long: setup
	$(VENV)/bin/pytest -ra --durations=15 -m long $(PYTEST_ARGS)

test-fast: setup
	$(VENV)/bin/pytest -ra -m "not pipeline and not browser and not hub" $(PYTEST_ARGS)

bench: setup bench-jdaviz-env
	$(PY) benchmarks/run_all.py

# jdaviz, the Cubeviz baseline of benchmarks/bench_widgets.py, brings ~90 packages the project does
# not use (glue, solara, vispy, astroquery...): it gets its own virtualenv, so `make test` and CI
# install none of them and neither side's requirements move the other's. The benchmark runs its
# sessions there in a subprocess. Not part of `make test` or CI.
JDAVIZ_VENV ?= .venv-jdaviz
JDAVIZ_VERSION ?= 5.0.2
bench-jdaviz-env: $(JDAVIZ_VENV)/.stamp-$(JDAVIZ_VERSION)
$(JDAVIZ_VENV)/.stamp-$(JDAVIZ_VERSION):
	@test -x $(JDAVIZ_VENV)/bin/python || $(PYTHON) -m venv $(JDAVIZ_VENV)
	$(JDAVIZ_VENV)/bin/python -m pip install -q --upgrade pip
	$(JDAVIZ_VENV)/bin/python -m pip install -q jdaviz==$(JDAVIZ_VERSION) psutil
	@touch $@

clean:
	rm -rf $(VENV) $(JDAVIZ_VENV) node_modules test-output demo .pytest_cache
