# Two entry points for a fresh machine (see README): `make main` and `make test`.
# Everything lives in a project-local virtual environment, .venv/.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
# the documentation build (mkdocs.yml); the variable silences Material's end-of-life banner
MKDOCS  := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs
DATASET ?= mahanews-shc
PRESET  ?= cpu-quick

.PHONY: install main sentiment test docs clean

$(BIN)/mahacompress: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU wheel of torch first: an unpinned resolution would pull gigabytes of CUDA packages
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test,serve,openvino,docs,cluster]"
	touch $@

install: $(BIN)/mahacompress

# The main job on the embedded default: rebuild the e5 teacher, run the study's whole grid on MahaNews
# headlines (fine-tune, prune, distil, mixed precision, int8, ONNX; all measured in one run), score the
# fine-tuned teacher beside TF-IDF, and copy the report (not the models) to reports/.
main: install
	$(BIN)/mahacompress models build-e5 models/e5-small
	$(BIN)/mahacompress reproduce --teacher models/e5-small --preset $(PRESET) --dataset $(DATASET) --out runs/$(PRESET)
	$(BIN)/mahacompress compare --model runs/$(PRESET)/models/baseline --dataset $(DATASET) --out reports/teacher/metrics.json
	mkdir -p reports/$(PRESET)
	cp runs/$(PRESET)/results.json runs/$(PRESET)/results.csv runs/$(PRESET)/report.md runs/$(PRESET)/*.png reports/$(PRESET)/

# The second benchmark track: MahaSent-MR movie reviews (sentiment), where the teacher is well above TF-IDF.
sentiment: install
	$(BIN)/mahacompress models build-e5 models/e5-small
	$(BIN)/mahacompress reproduce --teacher models/e5-small --preset sentiment-quick --out runs/sentiment-quick
	mkdir -p reports/sentiment-quick
	cp runs/sentiment-quick/results.json runs/sentiment-quick/results.csv runs/sentiment-quick/report.md runs/sentiment-quick/*.png reports/sentiment-quick/

# The linter first (pyproject.toml's [tool.ruff]), then the docs with --strict (into a throwaway folder): a broken link, a missing page or a report a
# page links to that is gone fails the target before the suite runs. Its log is printed only when it fails
# (--quiet would hide the warnings --strict counts, and pass).
test: install
	$(BIN)/ruff check src tests benchmarks docs/hooks
	d=$$(mktemp -d) && out=$$($(MKDOCS) build --strict -d $$d 2>&1); rc=$$?; rm -rf $$d; [ $$rc -eq 0 ] || echo "$$out"; exit $$rc
	$(BIN)/python -m pytest

# The documentation site into site/ (open site/index.html; `$(BIN)/mkdocs serve` for live reload).
docs: install
	$(MKDOCS) build --strict

clean:
	rm -rf $(VENV) models runs site
