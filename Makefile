# Thin aliases for the README's two commands.
.PHONY: train test bench
train:
	./scripts/train.sh
test:
	./scripts/test.sh
bench:
	./scripts/bootstrap.sh && .venv/bin/python benchmarks/infonce.py
