# The two commands a new user needs: `make demo` and `make test`. Everything installs from here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
DEMO_OUT := demo-output
MUTATION := build/mutation

.PHONY: demo test lint setup browser x11 binary binary-onefile bench mutate train-idc train-skin clean

$(RUNTIME): pyproject.toml
	@echo "Installing patchscan into $(VENV) (once)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e .
	@touch $@

# The trainer is its own distribution (trainer/pyproject.toml): the runtime wheel stays lean.
$(DEV): $(RUNTIME) trainer/pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test,build]' -e ./trainer
	touch $@

setup: $(DEV)

$(VENV)/.mutate-installed: $(DEV)
	$(BIN)/python -m pip install -q -e '.[mutate]'
	touch $@

## demo: classify the bundled sample patches and write an HTML report. Its output is the scan's
## own summary (counts per class, calls to review, the files written) and where the report is.
demo: $(RUNTIME)
	@echo "Classifying the sample patches in assets/samples/idc (two patients) with the idc model"
	@mkdir -p $(DEMO_OUT)
	@$(BIN)/patchscan scan assets/samples/idc --csv $(DEMO_OUT)/demo.csv \
		--json $(DEMO_OUT)/demo.json --report $(DEMO_OUT)/demo.html || [ $$? -eq 1 ]
	@echo "Open the report: $(abspath $(DEMO_OUT)/demo.html)"

## browser: Debian's headless Chromium, for the report's rendering test
browser:
	@command -v chromium >/dev/null || { \
		[ "$$(id -u)" = 0 ] && SUDO= || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

## x11: a virtual display and a driver for the window tests (Debian packages)
x11:
	@command -v Xvfb >/dev/null && command -v xdotool >/dev/null || { \
		[ "$$(id -u)" = 0 ] && SUDO= || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq xvfb xdotool >/dev/null; }

## binary: the standalone app in dist/patchscan/ (one folder: fast start)
binary: $(DEV)
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/work build/patchscan.spec

## binary-onefile: the same app as one file, dist/onefile/patchscan (slower start: it unpacks)
binary-onefile: $(DEV)
	PATCHSCAN_ONEFILE=1 $(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist/onefile \
		--workpath build/work-onefile build/patchscan.spec

lint: $(DEV)
	$(BIN)/ruff check tool trainer tests
	$(BIN)/ruff format --check tool trainer tests
	$(BIN)/mypy

## test: lint, type-check and the whole test suite
test: $(DEV) browser x11 lint binary
	$(BIN)/python -m pytest

## bench: scan speed vs the decode-only floor, the limit and the Keras way (idc and skin), memory, rescan, watch latency
bench: $(DEV)
	$(BIN)/python bench/bench.py

## mutate: mutmut over the core modules against the fast tests, then killed / survived per
## module (docs/mutation.md). Not part of `make test`: hours on two cores. Starts afresh; with
## MUTANTS='patchscan.naming.* ...' (mutmut's names, wildcards allowed) it runs just those, on
## top of the results already in build/mutation/mutants (a module at a time, or the survivors
## again after a new test). MUTATE_CHILDREN: mutants tested at once (default 1). Survivors are
## then run again, each in a fresh pytest process (bench/mutation_confirm.py): mutmut's forking
## runner has reported mutants as survived that their tests fail on.
## mutmut 3 wants the package at the top of its folder, so build/mutation/ links to the sources.
## mutmut is started from `python -c`, not its script: the scan's worker processes are spawned,
## and a spawned child re-runs the parent's main script, which would load mutmut in the child.
MUTANTS ?=
MUTATE_CHILDREN ?= 1
mutate: $(VENV)/.mutate-installed
	mkdir -p $(MUTATION)
	ln -sfn ../../tool/patchscan $(MUTATION)/patchscan
	ln -sfn ../../tests $(MUTATION)/tests
	ln -sfn ../../assets $(MUTATION)/assets
	ln -sfn ../../pyproject.toml $(MUTATION)/pyproject.toml
	$(if $(MUTANTS),rm -rf $(MUTATION)/mutants/tests,rm -rf $(MUTATION)/mutants)
	cd $(MUTATION) && time ../../$(BIN)/python -c \
		'import sys; from mutmut.__main__ import cli; sys.exit(cli())' \
		run --max-children $(MUTATE_CHILDREN) $(MUTANTS)
	$(BIN)/python bench/mutation_confirm.py $(MUTATION)/mutants
	$(BIN)/python bench/mutation_summary.py $(MUTATION)/mutants --survivors

## train-idc: the shipped recipe, plain-x2: two 8-fold patient-level CVs of the plain recipe on the
## same folds, each fold's model trained as the shipped one is (7 folds, all epochs, last weights;
## ~17 min each here), judged as the mean of two networks (the ensemble's CV), then two networks
## on all patients with the CV's calibration, thresholds and review bands (~10 min)
train-idc: $(DEV)
	$(BIN)/patchscan-train cv idc --data ../shared/data/idc --out runs/idc-cv --epochs 10 --variant plain --no-validation
	$(BIN)/patchscan-train cv idc --data ../shared/data/idc --out runs/idc-cv-2 --epochs 10 --variant plain --no-validation
	$(BIN)/patchscan-train ensemble idc --cv runs/idc-cv --cv runs/idc-cv-2 --variant plain --out runs/idc-cv-ens
	$(BIN)/patchscan-train final idc --data ../shared/data/idc --cv runs/idc-cv-ens --variant plain-x2 --out runs/idc
	cp runs/idc/idc.onnx runs/idc/idc.md tool/patchscan/models/
	cp runs/idc/idc.keras bench/

train-skin: $(DEV)
	$(BIN)/patchscan-train train skin --data ../shared/data/skin --out runs/skin
	$(BIN)/patchscan-train calibrate skin --data ../shared/data/skin --model runs/skin/skin.onnx
	cp runs/skin/skin.onnx runs/skin/skin.md tool/patchscan/models/

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache dist build/work build/work-onefile test-output \
		$(MUTATION) mutants
