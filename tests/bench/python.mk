# Python side by side (issue 12): a NumPy array handed to a worker and back
# through scav, multiprocessing.shared_memory and plain pickling; memory
# backed after the arrays are dropped; what a SIGKILLed worker leaves. Runs
# the module `make all` built ($(BUILD)/python) against its scavd, and
# writes its own section of docs/benchmarks.md and docs/bench-python.png.
#
# peer-bench.py (bench-peers) rewrites docs/benchmarks.md whole: within
# `make bench` this comes after it. Alone: `make bench-python`.

.PHONY: bench-python
bench-python: python $(BUILD)/scavd $(if $(filter bench-run,$(MAKECMDGOALS)),bench-peers)
	PYTHONPATH=$(BUILD)/python $(PYTHON) tests/bench/py-share-bench.py --build $(BUILD) --out docs/benchmarks.md

bench-run: bench-python
