# The two commands of the README. Both set the machine up first (scripts/bootstrap.sh).
.PHONY: demo test lint bootstrap clean

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/mlops-spark pipeline --conf conf/flights.yml --env local

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy mlops_spark
	.venv/bin/python scripts/import_cycles.py

# Two workers, one test file each at a time (module fixtures stay in one process): on two
# cores a second Spark JVM fills the gaps the first leaves (Python, I/O, single-task stages).
# Files go out in the order tests/conftest.py gives them, slowest first.
TEST_WORKERS ?= 2

test: lint
	.venv/bin/python -m pytest -q tests --durations=25 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

clean:
	rm -rf lake mlflow.db mlruns reports
