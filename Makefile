# featherpose: `make demo` sets everything up and draws a skeleton; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COMPILED := $(VENV)/.compiled

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,bench,openvino]'
	touch $(STAMP)

# the numba kernels (Lite Pose's decoder, TF's letterbox) compiled into numba's cache once (15-30 s), not in each
# test process; again when they change
$(COMPILED): $(STAMP) src/featherpose/codecs/ae_compiled.py src/featherpose/image_compiled.py
	$(PY) -m featherpose.codecs.ae_compiled
	$(PY) -m featherpose.image_compiled
	touch $(COMPILED)

demo: $(COMPILED)
	$(VENV)/bin/featherpose predict --sample --save out/demo --json out/demo/messi5.json

# 2 processes (pytest-xdist; tests/conftest.py gives each its own CPU). A test process died once in 4 whole runs
# (in a test whose DataLoader forks a worker; nothing printed): what failed gets one more run in a single process,
# so a failure that repeats still fails.
test: $(COMPILED)
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
