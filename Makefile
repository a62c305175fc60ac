# The two quick-start commands (README): `make up` runs the service, `make test` tests it.
ARGS ?=

.PHONY: up test setup bench

up: setup
	.venv/bin/trainserve up $(ARGS)

test:
	scripts/test.sh $(ARGS)

setup:
	scripts/setup.sh

bench: setup
	.venv/bin/python bench/seed_job.py
	.venv/bin/python bench/train_throughput.py
