# The two commands of the README:  `make book` (set up + build the book offline)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu

.PHONY: setup book test smoke clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

book: setup
	$(VENV)/bin/certattr book --profile $(PROFILE)

smoke: setup
	$(VENV)/bin/certattr book --profile smoke

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf _build book/chapters
