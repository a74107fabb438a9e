# Two commands do everything on a fresh machine: `make reproduce` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

SCALE ?= shapes
SEEDS ?= 7
NGPUS ?= 0
WORKERS ?= $(shell nproc)
LAUNCHER ?= pool
PARTITION ?=
BUDGET ?=
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NOTEBOOKS := $(wildcard notebooks/*.ipynb)
SEED_LIST := [$(shell seq -s ', ' 0 $$(( $(SEEDS) - 1 )))]
# pip lists every local index it skips; those lines say nothing a user needs.
QUIET_PIP := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: reproduce test test-loaded book notebooks data venv smoke-notebook book-notebooks kernels-native machine-runs lint clean

reproduce: venv data  ## generate data, train what is missing, execute notebooks, build the book
ifeq ($(LAUNCHER),slurm)
	$(PY) -m mlc runs --scale $(SCALE) --seeds $(SEEDS) --launcher slurm $(if $(PARTITION),--partition $(PARTITION))
	@echo "when the jobs are done (python -m mlc runs --status), make book builds the book"
else
	@start=$$(date +%s); \
	$(PY) -m mlc runs --scale $(SCALE) --seeds $(SEEDS) --workers $(WORKERS) --ngpus $(NGPUS) \
	  $(if $(BUDGET),--budget-min $(BUDGET)); \
	$(MAKE) --no-print-directory notebooks; \
	$(MAKE) --no-print-directory build-book; \
	echo "make reproduce (scale $(SCALE), seeds $(SEED_LIST)) took $$(( $$(date +%s) - start )) s"
endif
# On a CPU, `mlc runs` trains WORKERS runs at once, one thread each (the committed shapes results
# were made so: CPU results depend on the thread count); with NGPUS=n each run is a torchrun job
# on n GPUs. It trains every run the notebooks ask for, rows added to a notebook's grid included,
# so the notebooks then only read (a run still missing shows as "not run"). BUDGET=N (minutes) starts
# no run that the committed records' paces say cannot end within N minutes, and says what is left.

# tests/book/: the book's notebooks, re-executed against the committed results without training.
test: venv  ## lint, unit and integration tests, nbval over the executed smoke and book notebooks
	$(VENV)/bin/ruff check mlc tests tools
	$(PY) -m pytest --nbval-lax tests

# The suite again beside LOAD busy processes (default: one per core): a test whose outcome hangs on
# the machine's speed passes idle and fails here. Both runs should give the same result.
LOAD ?= $(shell nproc)
test-loaded: venv  ## make test beside LOAD busy processes, to find a test that races the clock
	@pids=""; for i in $$(seq $(LOAD)); do $(PY) -c "while True: pass" & pids="$$pids $$!"; done; \
	trap "kill $$pids" EXIT; echo "make test beside $(LOAD) busy processes"; \
	$(MAKE) --no-print-directory test

book: venv  ## re-execute the notebooks from the results that exist (no training) and build
	$(MAKE) --no-print-directory notebooks ALLOW_TRAINING=false
	$(MAKE) --no-print-directory build-book

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[book,test]" 2>&1 | $(QUIET_PIP)
	TMPDIR=$(abspath $(VENV)) $(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null  # its empty temp folder stays in .venv
	touch $(STAMP)

data: venv  ## the scale's data set (generated for smoke and shapes; COCO must be downloaded)
ifeq ($(SCALE),coco)
	@test -f data/coco/annotations/instances_val2017.json || { echo "COCO 2017 is not under data/coco: see README.md"; exit 1; }
else
	@$(PY) -m mlc data $(SCALE)
endif

ALLOW_TRAINING ?= false
notebooks: venv
	@$(PY) -m mlc notebooks --scale $(SCALE) --seeds $(SEEDS) --workers $(WORKERS) $(if $(filter true,$(ALLOW_TRAINING)),--allow-training)

# Sphinx's progress goes to book/_logs/build.log; a failing build prints its end.
build-book: venv
	@mkdir -p book/_logs
	@$(VENV)/bin/jupyter-book build book --warningiserror --keep-going > book/_logs/build.log 2>&1 \
	  || { tail -n 40 book/_logs/build.log; echo "the book did not build: book/_logs/build.log"; exit 1; }
	@echo "the book: book/_build/html/index.html (its build log: book/_logs/build.log)"

# Table 5's 24-epoch schedule runs on the smoke schedule here (schedule / final_schedule
# null), to keep make test short.
smoke-notebook: venv  ## regenerate the executed smoke notebooks that nbval checks in make test
	tmp=$$(mktemp -d); for nb in notebooks/*.ipynb; do name=$$(basename $$nb .ipynb); \
	  extra=""; case $$name in table5) extra=", schedule: null";; intro|fig_*) extra=", final_schedule: null";; esac; \
	  MLC_RUNS=$$tmp/runs MLC_RESULTS=$$tmp/results MLC_DATA=$$tmp/data \
	  $(VENV)/bin/papermill --cwd notebooks $$nb tests/notebooks/$$name.smoke.ipynb \
	  --no-progress-bar -y "{scale: smoke, seeds: [0], allow_training: true$$extra}" || exit 1; done

# The book's executed notebooks at shapes scale, from the committed results, for nbval in make test.
book-notebooks: venv  ## refresh tests/book/ after committing new results
	rm -rf tests/book && mkdir -p tests/book
	MLC_RUNS=$$(mktemp -d) $(PY) -m mlc notebooks --scale shapes --seeds $(SEEDS) --workers $(WORKERS) --out tests/book

# The noise study's machine part (notebooks/noise.ipynb): runs of the book retrained where the CPU
# kernels round otherwise, one thread each as `mlc runs` trains the committed ones on a CPU,
# WORKERS at once. MACHINE_RUNS: FCOS− and FCOS− + ML + IUR on seeds 0-1, RPN on seed 0;
# NATIVE_RUNS adds seeds 2-6 of both FCOS− rows, enough seeds to tell a shifted level from a
# scattered one, and on seeds 0-6 RetinaNet and RetinaNet + ML + IUR and the rows of claims 1, 2
# and 5, to see whether their gains move.
MACHINE_RUNS := "--detector fcos_minus --seed 0" "--detector fcos_minus --seed 1" "--detector rpn --seed 0" \
  "--detector fcos_minus --seed 0 --set ml=true --set iur=true" \
  "--detector fcos_minus --seed 1 --set ml=true --set iur=true"
NATIVE_RUNS := $(MACHINE_RUNS) $(foreach s,2 3 4 5 6,"--detector fcos_minus --seed $(s)" \
  "--detector fcos_minus --seed $(s) --set ml=true --set iur=true") \
  $(foreach s,0 1 2 3 4 5 6,"--detector fcos_minus --seed $(s) --set ml=true" \
  "--detector fcos_minus --seed $(s) --set alignment=true" \
  "--detector fcos_minus --seed $(s) --set iur=true" "--detector fcos --seed $(s)" \
  "--detector rpn --seed $(s) --set ml=true" "--detector rpn --seed $(s) --set iur=true") \
  $(foreach s,1 2 3 4 5 6,"--detector rpn --seed $(s)") \
  $(foreach s,0 1 2 3 4 5 6,"--detector retinanet --seed $(s)" \
  "--detector retinanet --seed $(s) --set ml=true --set iur=true")
TRAIN_EACH = xargs -P $(WORKERS) -I{} sh -c '$(1) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m mlc train --quiet {}'

# With the CPU's own kernels instead of the pinned AVX2 ones, under results/kernels-native/.
kernels-native: venv  ## retrain the noise study's runs at the machine's own kernel level
	printf '%s\n' $(NATIVE_RUNS) | $(call TRAIN_EACH,MLC_CPU_KERNELS=native MLC_RESULTS=results/kernels-native MLC_RUNS=runs/kernels-native)

# At the pinned level on this CPU, under results/machines/<kernel fingerprint>/; a folder whose
# fingerprint is the committed runs' own says nothing new.
machine-runs: venv  ## retrain the noise study's runs at the pinned level, under this CPU's fingerprint
	fp=$$(OMP_NUM_THREADS=1 $(PY) -c "from mlc.util import cpu; cpu.pin(); from mlc.runs import kernel_fingerprint; print(kernel_fingerprint(1))") && export fp && \
	printf '%s\n' $(MACHINE_RUNS) | $(call TRAIN_EACH,MLC_RESULTS=results/machines/$$fp MLC_RUNS=runs/machines/$$fp)

lint: venv
	$(VENV)/bin/ruff check mlc tests tools

clean:  ## remove the built book and executed notebooks (not runs, data or the venv)
	rm -rf book/_build book/*.ipynb
