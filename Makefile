# Set-up and checks. `make quickstart` installs everything and trains the quickstart suite into runs/;
# `make test` installs everything and runs the tests. TORCH pins the wheels that lie on the
# reference machines' disk; on a GPU node keep its own torch with `make quickstart TORCH=`.
PYTHON ?= python3
TORCH ?= torch==2.14.1 torchvision==0.29.1
# Cells trained at once: on 2 CPU cores two single-threaded workers beat one two-threaded process by ~30%.
JOBS ?= 2
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: install data quickstart test test-slurm lint bench

install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check $(TORCH) -e '.[test]'

# Debian/Ubuntu ship Fashion-MNIST as a package; elsewhere `protobench run` downloads it with torchvision.
data:
	@if [ ! -e $(FMNIST) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "apt could not install dataset-fashion-mnist; protobench will try torchvision's download"; \
	fi

quickstart: install data
	$(PYTHON) -m protobench run quickstart --jobs $(JOBS) --results runs

# Two pytest workers (pytest-xdist), one torch thread each: on 2 cores about twice as fast as one process.
test: install
	$(PYTHON) -m pytest -n $(JOBS) --dist worksteal

# A real single-node Slurm running docs/slurm/grid-array.sbatch (tests/test_slurm.py, docs/slurm/README.md): needs
# root and Debian's slurm-wlm and munge; minutes, so it is not part of `make test`.
test-slurm: install
	PROTOBENCH_SLURM_TESTS=1 $(PYTHON) -m pytest tests/test_slurm.py -p no:xdist -s -rs

lint:
	$(PYTHON) -m ruff check protobench tests

bench:
	$(PYTHON) -m protobench.bench prototypes
