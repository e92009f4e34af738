# The two commands of the README:  `make book` (set up + build the book offline)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu

.PHONY: setup book test smoke clean chromium grading assignments

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

# one pytest worker per core (TEST_WORKERS=0: one process); a file's tests run on one worker, in order, so its
# module fixtures (the smoke book, the sweep's cluster) are built once. -rfEsxX: the summary lists every failure,
# error, skip and expected failure with its reason (one -r option with all the letters: a second -r replaces the first)
TEST_WORKERS ?= auto
test: setup chromium grading
	$(PY) -m pytest -q -rfEsxX -n $(TEST_WORKERS) --dist loadfile

# nbgrader (the optional [grading] extra) for the tests that run the grader on the instructor notebooks
grading: $(VENV)/.grading

$(VENV)/.grading: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[test,grading]"
	touch $@

# student and instructor (nbgrader) notebooks of every chapter: ASSIGNMENTS=<folder> to choose where
ASSIGNMENTS ?= _build/assignments
assignments: setup
	$(VENV)/bin/certattr assignments --out $(ASSIGNMENTS)

# headless Chromium for the book test (MathJax typesets offline); installed with apt-get where missing, as root
chromium:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || (apt-get update -qq && apt-get install -y -qq chromium)
	@command -v chromium >/dev/null || echo "chromium is not installed (not root): the book's browser test will skip"

clean:
	rm -rf _build book/chapters
