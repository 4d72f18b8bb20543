# Every target installs what it needs first, so `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
USEROPS := $(VENV)/bin/userops
STAMP := $(VENV)/.installed-stamp
DATA ?= data/demo
REAL ?= data/online_retail
RETAIL_SRC ?= ../shared/data/online_retail/online_retail.parquet
DEMO_USERS ?= 3000
DEMO_DAYS ?= 240
DEMO_AS_OF ?= 2025-08-29
REAL_AS_OF ?= 2011-09-01
PYTEST_WORKERS ?= 2

.PHONY: install run test bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(USEROPS) simulate --users $(DEMO_USERS) --days $(DEMO_DAYS) --seed 7 --out $(DATA)
	$(USEROPS) pipeline --data $(DATA) --as-of $(DEMO_AS_OF)
	$(USEROPS) train recommender --data $(DATA) --as-of $(DEMO_AS_OF)
	$(USEROPS) recommend --data $(DATA) --as-of $(DEMO_AS_OF) --users all -k 10 --out $(DATA)/recommendations.parquet
	$(USEROPS) experiments analyze --data $(DATA) --experiment retention_campaign --metric conversion \
	  --metric revenue --window 30 --html $(DATA)/reports/retention_campaign.html
	@if [ -f $(RETAIL_SRC) ]; then \
	  $(USEROPS) ingest --events $(RETAIL_SRC) --preset online-retail --out $(REAL) && \
	  $(USEROPS) pipeline --data $(REAL) --as-of $(REAL_AS_OF) && \
	  $(USEROPS) train recommender --data $(REAL) --as-of $(REAL_AS_OF); \
	else echo "($(RETAIL_SRC) not found: skipping the real data set)"; fi
	@echo "done: win-back list in $(DATA)/winback/, scores in $(DATA)/scores/, recommendations in" \
	  "$(DATA)/recommendations.parquet, experiment report in $(DATA)/reports/; MLflow runs in $(DATA)/mlflow.db"
	@key=$$($(USEROPS) keys create --data $(DATA) --role admin 2>/dev/null | tail -n 1) && \
	  user=$$($(PY) -c "import glob, pandas as p; print(p.read_csv(sorted(glob.glob('$(DATA)/winback/*.csv'))[-1]).user_id.iloc[0])") && \
	  echo "" && echo "Start the API on this world:" && \
	  echo "  $(USEROPS) serve --data $(DATA) --port 8000" && \
	  echo "then, in another terminal (an admin key was made for you: $(USEROPS) keys create makes more):" && \
	  echo "  curl -H 'Authorization: Bearer $$key' 'http://127.0.0.1:8000/v1/users/$$user/churn-risk'" && \
	  echo "  curl -H 'Authorization: Bearer $$key' 'http://127.0.0.1:8000/v1/users/$$user/next-best-offer'" && \
	  echo "  curl -H 'Authorization: Bearer $$key' 'http://127.0.0.1:8000/v1/users/$$user/recommendations?k=5'" && \
	  echo "  curl -H 'Authorization: Bearer $$key' 'http://127.0.0.1:8000/v1/items/i00001/similar?k=5'" && \
	  echo "  curl -H 'Authorization: Bearer $$key' 'http://127.0.0.1:8000/v1/experiments/retention_campaign/results?metric=conversion'"

test: install
	$(PY) -m pytest -n $(PYTEST_WORKERS) --durations=15

bench: install
	@for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

CODE := features training experiments serving userops simulator tests bench

lint: install
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)
	$(VENV)/bin/mypy
	$(VENV)/bin/codespell $(CODE) README.md docs

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
