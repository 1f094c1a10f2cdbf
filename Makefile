# Every target sets up first; `make setup` alone makes .venv/ (Debian packages too).
VENV := .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: setup demo test bench lint

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/soundtrail demo

test: setup
	@SOUNDTRAIL_TEST_POSTGRES_URL=$$(bash scripts/postgres.sh | tail -1) $(BIN)/python -m pytest -q -ra

bench: setup
	@for bench in benchmarks/*.py; do \
		case $$bench in */timing.py) continue;; esac; \
		echo "== $$bench"; $(BIN)/python $$bench --quick || exit 1; \
	done

lint: setup
	$(BIN)/ruff check soundtrail tests benchmarks
