# Two commands on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned here (a local CPU build on the development machine); pyproject keeps a range for users.
TORCH ?= torch==2.13.0

.PHONY: install test demo lint bench docs clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,cluster]'
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q

demo: $(VENV)/.installed
	$(VENV)/bin/ntm demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# The docs extra is installed on first use only: `make test` never needs mkdocs.
$(VENV)/.docs-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,cluster,docs]'
	touch $@

docs: $(VENV)/.docs-installed
	$(VENV)/bin/mkdocs build --strict --site-dir site

bench: $(VENV)/.installed
	$(PY) benchmarks/train_step.py

clean:
	rm -rf $(VENV) build site *.egg-info src/*.egg-info
