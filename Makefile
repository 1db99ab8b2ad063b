# Two commands do all the set-up on a fresh machine (README):
#   make demo   installs into .venv, then runs the demo LODO ablation study
#   make test   installs into .venv, then runs the test suite CI runs
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STUDY_CONFIG ?= studies/configs/demo.yaml
STORAGE ?= runs
CLUSTER ?= ray_cluster.yaml
# The cluster's file mounts leave .git behind: the commit travels in this file (docs/cluster.md).
COMMIT_STAMP ?= platform/heartbeatai/_build_commit.txt

.PHONY: install demo test test-slow bench clean commit-stamp cluster-up

$(STAMP): pyproject.toml setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, through the constraints: an unpinned torch pulls a multi-GB CUDA build
	$(PY) -m pip install -q -c constraints.txt torch
	# setuptools announces every editable install with a warning ("Editable installation.
	# Please be careful with folders ... of the same name"): information, not a defect of
	# the packaging, so only that one is filtered; any other build warning still shows.
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The same script `ray submit` runs: starts the study, or resumes it when it exists
# (a finished study then only prints where its results are).
demo: $(STAMP)
	$(PY) studies/ablation.py --config $(STUDY_CONFIG) --storage $(STORAGE)

# Two processes, each taking a whole test file at a time: a file's module fixtures (a study,
# a training) are built once, and the Ray and browser tests pick free ports, so two run side by side.
# The longest files first (tests/conftest.py SLOWEST_FIRST), not xdist's most-tests-first order.
test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q -n 2 --dist loadfile --no-loadscope-reorder

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache

# Run on the client before `ray up` (cluster-up does both): provenance reads the commit
# from this file where the source tree has no .git.
commit-stamp:
	git rev-parse HEAD > $(COMMIT_STAMP)

cluster-up: commit-stamp
	ray up -y $(CLUSTER)
