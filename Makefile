# Two commands do all set-up on a fresh machine with Python >= 3.11:
#   make demo   -> install into .venv, run configs/demo.toml on 2 MPI ranks
#   make test   -> install into .venv, run the whole test suite (MPI tests included)
# GPU variant: make install GPU=cuda12 (likewise demo, test); VENV=.venv-gpu installs elsewhere.
PYTHON   ?= $(shell command -v python3.11 || command -v python3)
VENV     ?= .venv
GPU      ?=
BIN      := $(VENV)/bin
PIP      := $(BIN)/python -m pip
STAMP    := $(VENV)/.distnqs-installed$(if $(GPU),-$(GPU))
MPI4JAX  := mpi4jax==0.9.1.post2
NP       ?= 2
# pytest-xdist workers for make test: one more than the 2 cores, since some tests wait on a
# process (Slurm requeue, signals, timeouts) with a core idle (README: suite time)
TEST_WORKERS ?= 3
# mpi4jax is source-only. Its build must use the mpicc of the mpich wheel, see
# mpi4py/nanobind/setuptools (--no-build-isolation), and must not see an nvcc
# without CUDA headers (it would try to build the CUDA extension and fail):
# build it with every PATH directory that holds an nvcc removed.
NO_NVCC_PATH := $(shell echo "$(CURDIR)/$(BIN):$$PATH" | tr ':' '\n' | while read d; do [ -n "$$d" ] && [ ! -x "$$d/nvcc" ] && printf '%s:' "$$d"; done)
# XLA's CPU runtime allocates and frees its large step buffers every step; glibc serves them
# with fresh mmap'd 4 KiB pages, so a run spends a third of its CPU time in page faults
# (NAQS 4x4 minSR, 30 steps: 13.8 M minor faults, 34 s of 140 CPU-s). glibc's hugetlb tunable
# (madvise'd transparent huge pages; no effect where THP is off) cuts that: 82 -> 59 s wall.
# Read by the dynamic loader at process start, so it is set here, for every process of the job.
HUGEPAGES := GLIBC_TUNABLES=glibc.malloc.hugetlb=1
# GPU=cuda12: jax's CUDA wheels (same jax version as the CPU install) and mpi4jax built WITH its
# CUDA extension against NVIDIA's pip wheels: mpi4jax's setup takes site-packages/nvidia/cuda_nvcc
# (nvcc, crt/ headers) and nvidia/cuda_runtime (cudart) when both exist, before any nvcc on PATH.
# --no-cache-dir: pip's wheel cache may hold an mpi4jax built for the CPU install.
ifneq ($(filter-out cuda12,$(GPU)),)
$(error GPU must be empty (CPU) or cuda12, got '$(GPU)')
endif

.PHONY: install demo test clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q -e '.[mpi,tomography,test]'
ifeq ($(GPU),cuda12)
	$(PIP) install -q "jax[cuda12]==$$($(BIN)/python -c 'import jax; print(jax.__version__)')" nvidia-cuda-nvcc-cu12 nvidia-cuda-runtime-cu12
	nvidia=$$($(BIN)/python -c "import mpi4py, pathlib; print(pathlib.Path(mpi4py.__file__).parents[1] / 'nvidia')") && \
	  test -d "$$nvidia/cuda_nvcc/include/crt" && test -d "$$nvidia/cuda_runtime/include" && \
	  env PATH="$$nvidia/cuda_nvcc/bin:$(NO_NVCC_PATH)" CUDA_PATH= CUDA_ROOT= MPI4JAX_BUILD_MPICC="$(CURDIR)/$(BIN)/mpicc" \
	  $(PIP) install -q --no-build-isolation --no-binary mpi4jax --no-cache-dir --force-reinstall --no-deps '$(MPI4JAX)'
	$(BIN)/python -c "import mpi4jax; assert mpi4jax.has_cuda_support(), 'mpi4jax was built without CUDA'"
else
	$(BIN)/python -c "import mpi4jax" 2>/dev/null || \
	  env PATH="$(NO_NVCC_PATH)" CUDA_PATH= CUDA_ROOT= MPI4JAX_BUILD_MPICC="$(CURDIR)/$(BIN)/mpicc" \
	  $(PIP) install -q --no-build-isolation --no-binary mpi4jax '$(MPI4JAX)'
endif
	$(BIN)/python -c "import distnqs, mpi4jax, netket, flax, optax, h5py"
	touch $(STAMP)

demo: install
	$(HUGEPAGES) $(BIN)/mpirun -np $(NP) $(BIN)/distnqs run configs/demo.toml --outdir runs/demo

test: install
	$(HUGEPAGES) DISTNQS_REQUIRE_MPI=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -ra -n $(TEST_WORKERS) --dist loadgroup --durations=30 tests

clean-venv:
	rm -rf $(VENV)
