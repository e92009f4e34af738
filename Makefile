# The two commands of the README:  `make book` (set up + build the book offline)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu

.PHONY: setup book test smoke clean chromium

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

test: setup chromium
	$(PY) -m pytest -q

# headless Chromium for the book test (MathJax typesets offline); installed with apt-get where missing, as root
chromium:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || (apt-get update -qq && apt-get install -y -qq chromium)
	@command -v chromium >/dev/null || echo "chromium is not installed (not root): the book's browser test will skip"

clean:
	rm -rf _build book/chapters
