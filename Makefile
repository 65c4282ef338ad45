# featherpose: `make demo` sets everything up and draws a skeleton; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,bench,openvino]'
	$(PY) -m featherpose.codecs.ae_compiled  # compiles Lite Pose's decoder once (numba's cache), not in each test process
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/featherpose predict --sample --save out/demo --json out/demo/messi5.json

# 2 processes (pytest-xdist; tests/conftest.py gives each its own CPU). A test process died once in 4 whole runs
# (in a test whose DataLoader forks a worker; nothing printed): what failed gets one more run in a single process,
# so a failure that repeats still fails.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=10 || $(PY) -m pytest -q --lf --lfnf=none

bench: $(STAMP)
	$(PY) benchmarks/movenet_speed.py
	$(PY) benchmarks/movenet_eval.py
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/movenet_memorise.py
	$(PY) benchmarks/hourglass_memorise.py
	$(PY) benchmarks/distill_speed.py

clean:
	rm -rf $(VENV) out
