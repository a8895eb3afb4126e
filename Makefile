# LeanVibe Deploy: `make demo` brings the local environment up (and its dashboard), `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
COLLECTION_LINK := .collections/ansible_collections/leanvibe/deploy
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup venv collection nginx tools
setup: venv collection nginx tools

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt constraints.txt python_runner/pyproject.toml monitor/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade 'pip==26.3'
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	# The runner (leanvibe-runner) and the monitor (leanvibe-monitor), editable; their dependencies are pinned above.
	# A venv made before the rename holds the runner as leanvibe-deploy-runner: drop it, it owns the same files.
	$(BIN)/pip uninstall --quiet --yes leanvibe-deploy-runner 2>/dev/null || true
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e python_runner -e monitor
	touch $@

# A link, not a copy: edits to plugins/ and roles/ are live without a reinstall.
collection: $(COLLECTION_LINK)
$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../.. $@

# nginx with the Lua module (live weights) from the OS package manager, only when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NGINX_LUA_MODULE := /usr/lib/nginx/modules/ngx_http_lua_module.so
nginx:
	@if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] || [ ! -f $(NGINX_LUA_MODULE) ]; then \
	  echo "Installing nginx and its Lua module with apt-get"; \
	  $(SUDO) apt-get update -qq && \
	  { $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light libnginx-mod-http-lua \
	    || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-http-lua; }; \
	fi

# OS packages the tests need, each installed only when missing, so that no test skips for want of it:
# PostgreSQL (the monitor store's tests; initdb lives under /usr/lib/postgresql/<version>/bin), Chromium (the
# dashboard test), shellcheck (ansible-test sanity), jq and node (the workflow's steps and its `if:` expressions).
tools:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v shellcheck >/dev/null 2>&1 || missing="$$missing shellcheck"; \
	command -v jq >/dev/null 2>&1 || missing="$$missing jq"; \
	{ command -v node && command -v npm; } >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing$$missing with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# GitHub's own expression parser (npm), for the workflow's `if:` conditions in tests/static; npm's cache
# (~/.npm) serves it again without the registry.
GH_EXPRESSIONS_VERSION := 0.3.61
GH_EXPRESSIONS := .cache/npm/node_modules/@actions/expressions/package.json
$(GH_EXPRESSIONS): | tools
	npm install --prefix .cache/npm --prefer-offline --no-audit --no-fund --no-save --silent @actions/expressions@$(GH_EXPRESSIONS_VERSION)
	@grep -q '"version": "$(GH_EXPRESSIONS_VERSION)"' $@ || { echo "$@ is not version $(GH_EXPRESSIONS_VERSION)"; exit 1; }

PLAYBOOK := $(BIN)/ansible-playbook -i inventories/local
RUN_DIR := $(CURDIR)/.run

.PHONY: demo stop status
DEMO_CANARY := -e '{"canary_steps": [10, 25, 50, 100], "canary_step_pause_s": 3, "canary_abort_delay_s": 3}'
demo: setup
	$(PLAYBOOK) playbooks/site.yml
	$(PLAYBOOK) playbooks/canary.yml -e app_version=2.0.0 $(DEMO_CANARY)
	@echo; echo "== A faulty 2.1.0 (every answer 300 ms late) goes out as a canary under traffic; it must roll back on its own."
	@$(BIN)/python scripts/traffic.py --seconds 120 --rate 40 > $(RUN_DIR)/demo-traffic.json & traffic=$$!; \
	$(PLAYBOOK) playbooks/canary.yml -e app_version=2.1.0 $(DEMO_CANARY) \
	  -e '{"app_env": {"LEANVIBE_FAULT_LATENCY_MS": "300"}}' > $(RUN_DIR)/demo-canary-2.1.0.log 2>&1; rc=$$?; \
	kill $$traffic 2>/dev/null; wait $$traffic 2>/dev/null; \
	grep -E "^(fatal|    msg: 'canary)" -A3 $(RUN_DIR)/demo-canary-2.1.0.log | tail -4; \
	if [ $$rc -eq 0 ]; then echo "the faulty canary was promoted: see $(RUN_DIR)/demo-canary-2.1.0.log"; exit 1; fi; \
	echo "== user traffic during that canary: $$(cat $(RUN_DIR)/demo-traffic.json)"
	@$(MAKE) --no-print-directory status
	@echo; echo "== Dashboard (probes, deploy and rollback markers): http://127.0.0.1:5000/"

status:
	@$(BIN)/python scripts/show_local.py

stop:
	@$(PYTHON) scripts/stop_local.py $(RUN_DIR)

.PHONY: test test-fast unit static integration molecule
# `make test-fast` for the edit loop (a few minutes); `make test` runs every stage. Both stop at the first
# failing stage and print how long each stage took.
FAST_STAGES := sanity lint ruff docs-check unit
TEST_STAGES := $(FAST_STAGES) static integration molecule
define run_stages
	@timings=""; status=0; \
	for stage in $(1); do \
	  start=$$(date +%s); \
	  $(MAKE) --no-print-directory $$stage || status=$$?; \
	  timings="$$timings$$(printf '%-12s %5d s' $$stage $$(( $$(date +%s) - start )))$$([ $$status -eq 0 ] || echo '  FAILED');"; \
	  [ $$status -eq 0 ] || break; \
	done; \
	echo "== time per stage:"; echo "$$timings" | tr ';' '\n' | sed '/^$$/d; s/^/   /'; \
	exit $$status
endef
test: setup
	$(call run_stages,$(TEST_STAGES))

test-fast: setup
	$(call run_stages,$(FAST_STAGES))

# PYTEST_ARGS: extra pytest options, e.g. PYTEST_ARGS='-m "not slow"' or PYTEST_ARGS='-k canary'.
PYTEST_ARGS ?=
# Most unit tests wait (on sockets, subprocesses, timeouts) rather than compute: two workers halve the stage.
UNIT_WORKERS ?= 2
unit:
	mkdir -p $(CURDIR)/.cache
	$(BIN)/python -m pytest tests/unit -q -n $(UNIT_WORKERS) --basetemp=$(CURDIR)/.cache/pytest-unit $(PYTEST_ARGS)

# Offline checks of the CI and delivery files: the workflow (its `if:` conditions through GitHub's expression
# evaluator), the execution environment, the galaxy build and the AWX playbook.
static: venv tools $(GH_EXPRESSIONS)
	$(BIN)/python -m pytest tests/static -q --basetemp=$(CURDIR)/.cache/pytest-static $(PYTEST_ARGS)

# A basetemp of this checkout's own: pytest prunes old dirs under /tmp/pytest-of-<user>, which would pull the
# files out from under another test session running at the same time.
# Two pytest-xdist workers, one test file each at a time: each has its own basetemp (<basetemp>/gwN) and its own
# 100 ports from LEANVIBE_TEST_PORT_BASE + 100 * N (tests/integration/conftest.py).
INTEGRATION_WORKERS ?= 2
integration:
	mkdir -p $(CURDIR)/.cache
	$(BIN)/python -m pytest tests/integration -q -n $(INTEGRATION_WORKERS) --dist loadfile --basetemp=$(CURDIR)/.cache/pytest-integration $(PYTEST_ARGS)

# The module and role reference in docs/reference/, generated from DOCUMENTATION and meta/argument_specs.yml through
# ansible-doc (antsibull-docs); docs-check fails when the committed reference is not what the code generates, when a
# DOCUMENTATION's markup or references to this collection are broken, or when a changelog fragment is.
.PHONY: docs docs-check changelog
ANTSIBULL_DOCS := $(BIN)/antsibull-docs collection --use-current --squash-hierarchy --output-format simplified-rst \
  --no-add-antsibull-docs-version --fail-on-error --cleanup everything leanvibe.deploy
docs: venv collection
	$(ANTSIBULL_DOCS) --dest-dir docs/reference

docs-check: venv collection
	rm -rf .cache/docs-check && mkdir -p .cache/docs-check
	$(ANTSIBULL_DOCS) --dest-dir .cache/docs-check
	@diff -ru docs/reference .cache/docs-check || { echo "docs/reference/ differs from what DOCUMENTATION and argument_specs generate: run make docs"; exit 1; }
	$(BIN)/antsibull-docs lint-collection-docs --plugin-docs --validate-collection-refs self $(COLLECTION_LINK)
	$(BIN)/antsibull-changelog lint

# CHANGELOG.md from changelogs/: the fragments fold into the unreleased 0.1.0 of changelogs/changelog.yaml (they stay).
changelog: venv collection
	$(BIN)/antsibull-changelog lint
	$(BIN)/antsibull-changelog release --version $$(sed -n 's/^version: *//p' galaxy.yml) --update-existing

.PHONY: sanity lint
# ansible-test sanity on the built tarball's content, in .cache/sanity/ansible_collections/leanvibe/deploy
# (offline get-pip stand-in); shellcheck from `tools` so that its test runs.
sanity: venv tools
	scripts/ansible-test-sanity.sh

# ruff over every Python file of the repository (ruff.toml).
.PHONY: ruff
ruff: venv
	$(BIN)/ruff check .

# ansible-lint, production profile, offline (.ansible-lint); the .collections link resolves leanvibe.deploy.*.
# shellcheck for the repository's own shell scripts, which do not ship (ansible-test checks what does).
lint: venv collection tools
	$(BIN)/ansible-lint
	shellcheck scripts/*.sh .ci/run

# One scenario per role: driver `default`, local connection, converge + idempotence + verify.
molecule: venv collection
	scripts/molecule.sh

# Benchmarks (figures in BENCHMARKS.md). They run against the environment `make demo` brings up.
# deploy_under_load.py: 250 req/s of keep-alive load without retries through the LB while a blue-green
# switch, a canary, a faulty canary's automatic rollback and an emergency rollback run (3 rounds).
# monitor_queries.py needs no environment: the dashboard's API on temp databases of 30 and 7 days (about 35 s).
.PHONY: bench bench-tools
BENCH_LOAD_ARGS ?= --rounds 3 --rate 250 --connections 16
bench: demo bench-tools
	$(BIN)/python bench/probe_suite.py --rounds 10
	$(BIN)/python bench/rollback_speed.py --rounds 5 --canary-rounds 3
	$(BIN)/python bench/monitor_queries.py
	$(BIN)/python bench/deploy_under_load.py $(BENCH_LOAD_ARGS)

# The seed's probe script needs curl, bc and jq.
bench-tools:
	@for tool in curl bc jq; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# The execution environment's build context in .cache/ee/context (offline); building the image
# from it (`ansible-builder build`) needs podman or docker.
.PHONY: ee
ee: venv
	$(BIN)/ansible-galaxy collection build --output-path .cache/ee --force
	$(BIN)/ansible-builder create -f execution-environment.yml --context .cache/ee/context --output-filename Containerfile
