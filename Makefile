# lintwin: two commands for a newcomer.
#   make demo   set up .venv (once), then run the default job (experiment=suite) and print its scoreboard
#   make test   set up .venv (once), then run the test suite
# The venv is rebuilt only when pyproject.toml changes (the stamp file records the install).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The shared read-only data copy sits beside the project in CI and on the dev machines; LINTWIN_DATA overrides.
export LINTWIN_DATA ?= $(abspath ../shared/data)

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# torch and torchvision must be a matching pair; pip resolves them from the project's ranges
	$(BIN)/pip install --quiet -e '.[dev,slurm]'
	touch $(STAMP)

# one thread per process: the presets are small, and two threads thrash when anything else shares the 2 cores
demo: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/lintwin

# the tests run in TEST_WORKERS processes (pytest-xdist) of one thread each: the suite is single-core bound
TEST_WORKERS ?= 2
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf runs outputs
