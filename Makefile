# upkeep.runbooks: every entry point an operator or CI uses. Each target sets up what it
# needs itself (Debian packages when running as root, the .venv from pinned requirements).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV       := .venv
PY         := $(VENV)/bin/python
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.installed
export CONTAINERS_CONF := $(CURDIR)/lab/containers.conf
export ANSIBLE_CONFIG  := $(CURDIR)/ansible.cfg
export PATH            := $(CURDIR)/$(BIN):$(PATH)

# Debian packages the lab, the tests and the benchmarks need on this machine.
# python3-venv: Debian's python3 cannot create the .venv without it.
# aptly, gnupg: the signed test apt repository of the patching tests (lab/aptrepo.py).
# chromium: the HTML report is checked in a headless browser (tests/integration/test_report_browser.py).
# pgbackrest: continuous WAL archiving and PITR (pgbackrest_info, pitr_restore, role pitr) and their tests.
# nginx: the real web tier in front of the sample app whose access log http_log_stats reads
#   (tests/fixtures/web.py).
# rsyslog: a real collector and forwarders on loopback for the log-shipping canary (tests/fixtures/syslog.py).
# util-linux: nsenter, through which Molecule reaches its containers (lab/ansible_plugins/connection); essential
#   in Debian, named so a stripped image or another distribution says so.
DEB_PACKAGES := python3-venv podman runc debootstrap uidmap fuse-overlayfs slirp4netns \
                postgresql-15 postgresql-client-15 redis-server zstd git aptly gnupg chromium pgbackrest \
                nginx rsyslog util-linux

.PHONY: help
help:  ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: deps
deps:  ## Install missing Debian packages (as root), or say which command to run
	@missing=$$(for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed' || printf '%s ' "$$p"; \
	done); \
	missing=$${missing% }; \
	[ -n "$$missing" ] || exit 0; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "Missing Debian packages: $$missing" >&2; \
	  echo "Run as root: apt-get update && apt-get install -y --no-install-recommends $$missing" >&2; \
	  exit 1; \
	fi; \
	echo "+ apt-get update"; \
	apt-get update; \
	echo "+ apt-get install -y --no-install-recommends $$missing"; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing

$(STAMP): requirements-dev.txt tests/requirements-hvac-debian.txt | deps
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	rm -rf $(VENV)/hvac-debian
	$(PY) -m pip install --quiet --no-deps --target $(VENV)/hvac-debian -r tests/requirements-hvac-debian.txt
	touch $@

.PHONY: venv
venv: $(STAMP)  ## Create .venv from the pinned requirements

.PHONY: lab-up
lab-up: deps venv  ## Build the lab image if needed, start and provision the lab
	$(PY) lab/labctl.py up

.PHONY: lab-down
lab-down:  ## Remove the lab containers, stop its endpoints, drop its state
	@if [ -x $(PY) ]; then $(PY) lab/labctl.py down; else python3 lab/labctl.py down; fi

.PHONY: lab-status
lab-status: venv  ## Show what of the lab is running
	$(PY) lab/labctl.py status

# The runbook `make demo` runs: daily by default; `make demo RUNBOOK=rotate` rotates the lab's
# credentials through Vault, any of daily weekly monthly quarterly annually rotate restore works.
RUNBOOK ?= daily

.PHONY: demo
demo: lab-up  ## Run a runbook (RUNBOOK=daily) against the lab and print its report
	$(BIN)/ansible-playbook -i inventories/lab playbooks/$(RUNBOOK).yml

.PHONY: lint
lint: venv  ## ansible-lint (production profile) and ruff
	$(BIN)/ruff check .
	$(BIN)/ansible-lint --offline

.PHONY: sanity
sanity: venv  ## ansible-test sanity on a built copy of the collection
	$(PY) tests/run_sanity.py

.PHONY: unit
unit: venv  ## Unit tests
	$(PY) -m pytest -q tests/unit

.PHONY: integration
integration: deps venv  ## Integration tests against real PostgreSQL, S3 and Vault endpoints
	$(PY) -m pytest -q -n 2 --durations=15 -m "not containers" tests/integration

# Whole playbooks on containers of the lab image (the staged patch rollout): minutes of
# Ansible round trips and container reboots, little CPU, so they get a lane of their own.
.PHONY: e2e
e2e: deps venv lab-image  ## Integration tests that drive playbooks on lab-image containers
	$(PY) -m pytest -q -n 2 --durations=15 -m containers tests/integration

# Each scenario has its own containers, loopback block and state, so they run side by side:
# a scenario spends most of its time waiting on systemd, PostgreSQL and Ansible round trips
# (with the nsenter connection plugin, Molecule's podman calls are few), so all five at once take
# little longer than the slowest. Each scenario's output is printed in one piece when it ends (--output-sync).
SCENARIOS := $(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml))

.PHONY: molecule lab-image
molecule: deps venv lab-image  ## Molecule scenarios on the lab image, side by side
	$(MAKE) --no-print-directory -j$(words $(SCENARIOS)) --output-sync=target $(addprefix molecule-,$(SCENARIOS))

lab-image: deps venv
	lab/build-images.sh >/dev/null

.PHONY: $(addprefix molecule-,$(SCENARIOS))
$(addprefix molecule-,$(SCENARIOS)): molecule-%:
	$(BIN)/molecule test -s $*

# The integration tests are CPU-bound, the container end-to-end tests and the Molecule
# scenarios mostly wait, so after the quick checks and the images the three run at the same
# time; make test stays under 30 minutes on a 2-core machine. Their outputs are printed whole,
# one after the other.
.PHONY: test
test: lint sanity unit ee lab-image  ## Everything CI runs (ee: the AWX-style runs use the image)
	$(MAKE) --no-print-directory -j3 --output-sync=target integration e2e molecule

.PHONY: bench
bench: deps venv  ## Benchmarks (ratios against a named baseline)
	$(PY) bench/run.py

.PHONY: build
build: venv  ## Build the collection tarball
	$(BIN)/ansible-galaxy collection build --force

# The execution environment for AWX: ansible-builder on a base made from the lab's debootstrap
# image, with the collection from the tarball above. Rebuilt only when an input changed.
.PHONY: ee
ee: deps build  ## Build the execution environment image (localhost/upkeep-runbooks-ee)
	ee/build.sh
