# `make demo`: install, train the default model, label the sample dumps, draw a cluster map.
# `make test`: install, run the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0          # CPU build, pinned first (see README)
	$(PY) -m pip install -q -e '.[test,ray]' torch==2.13.0   # torch pinned again: no extra may move it
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/classify train configs/default.yaml --output models/default
	$(VENV)/bin/classify evaluate models/default --output $(OUT)/evaluation.json
	$(VENV)/bin/classify predict data/dumps --model models/default --output $(OUT)/predictions.jsonl
	$(VENV)/bin/classify plot data/dumps --model models/default --output $(OUT)/map.png
	$(VENV)/bin/classify report data/dumps --model models/default --output $(OUT)/report.html

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) models $(OUT)
