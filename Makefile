# The developer loop: lint, types, tests.
.PHONY: check lint types test bench

check: lint types test

lint:
	python3 -m ruff check .

types:
	python3 -m mypy

test:
	python3 -m pytest -q

bench:
	python3 bench/bench_prep.py
