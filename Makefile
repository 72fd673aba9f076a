# Entry points: `make demo` (set up, explain a generated world scene with the bundled model), `make test` (all of
# it) and `make test-fast` (the tests not marked slow, for the edit-test cycle).
# TORCH_INDEX=https://download.pytorch.org/whl/cpu installs the CPU-only torch wheels first (where that index is
# reachable): about 1 GB instead of about 6 GB with the CUDA wheels PyPI serves on Linux.
VENV ?= .venv
PYTHON ?= python3
TORCH_INDEX ?=

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(if $(TORCH_INDEX),$(VENV)/bin/pip install -q torch torchvision --index-url $(TORCH_INDEX))
	$(VENV)/bin/pip install -q -e ".[vqgan]"  # the bundled world-vqgan, default generator of the README's commands
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e ".[test]"
	# the released code of the interactions explainer, for the equality test (Python >= 3.11; its own requirements
	# are notebook and OpenCV packages the test does not need)
	$(VENV)/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' && \
		$(VENV)/bin/pip install -q --no-deps exclip==1.1 || echo "exclip needs Python >= 3.11: its test is skipped"
	touch $@

.PHONY: setup demo test test-fast bench card explainers
setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/ntlb demo --out out/demo

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/python -m pytest -q

test-fast: $(VENV)/.installed-test
	$(VENV)/bin/python -m pytest -q -m "not slow"

bench: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/explain_speed.py
	$(VENV)/bin/python benchmarks/prompt_speed.py --reference-classes 5

explainers: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/explainers.py

card: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/world_model_card.py
