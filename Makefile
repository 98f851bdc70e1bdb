# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv and install the CPU build of torch. For CUDA, see README ("GPU install").
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-fast venv clean device-check

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt -e ".[test]"
	@if $(BIN)/python -m pip show torchvision >/dev/null 2>&1; then echo "torchvision was pulled in; it breaks transformers beside the CPU torch" >&2; exit 1; fi
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python tools/demo.py --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# day-to-day lane: everything except end-to-end trainer runs and slow tests (CI runs `make test`)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not training" $(PYTEST_ARGS)

# On a CUDA machine: full-size random models, the GPU matrix of docs/performance.md (under 8 minutes on one modern GPU).
# On a CPU: the same matrix on the tiny models, CUDA-only cases skipped with the reason.
device-check: $(STAMP)
	$(BIN)/python tools/device_check.py --out device_check

clean:
	rm -rf $(VENV) demo_out
