# The developer loop: lint, types, tests.
.PHONY: check lint types test test-fast bench

check: lint types test

lint:
	python3 -m ruff check .

types:
	python3 -m mypy

# -n auto: one pytest worker per core (pytest-xdist); a single test file runs faster serially: pytest FILE
test:
	python3 -m pytest -q -n auto

# The tests marked slow (DDP, Dask kills, memory limits, benchmarks) left out: for the edit loop.
test-fast:
	python3 -m pytest -q -n auto -m "not slow"

bench:
	python3 bench/bench_prep.py
