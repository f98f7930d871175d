# Two commands set everything up on a fresh machine:
#   make demo   -> venv, install, reconstruct the shipped real sample at 4x and 8x
#   make test   -> venv, install (with test extras and system packages), run the tests
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch==2.13.0 first (the CPU wheel); the project's torch range keeps it.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[qt,test,onnx]"
	$(PY) -m pip install -q --no-deps fastmri==0.3.0 || echo "fastmri not installed: mask cross-checks will be skipped"
	# real scans that ship inside PyPI packages (data prepare's dwi_b5, dwi_b1500, shoulder, abdomen sources);
	# heudiconv without its dependencies: only its test data is read
	$(PY) -m pip install -q pydicom-data==1.0.0
	$(PY) -m pip install -q --no-deps heudiconv==1.5.1
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	scripts/system-deps.sh demo
	$(VENV)/bin/nascsmri demo --out demo_out

test: $(STAMP)
	scripts/system-deps.sh test
	$(PY) -m pytest -q --durations=30

clean:
	rm -rf $(VENV) demo_out build *.egg-info
