"""Shared test helpers: reference data and running distnqs under mpirun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# One persistent XLA compilation cache for the whole suite: every xdist worker and every
# `distnqs` subprocess (they inherit the environment) compiles the same small problems again
# and again; most of a short run is compilation (a 24-step CLI run: 36 s cold, 12 s warm).
# Keyed by the HLO and the jax version, so a stale entry is never used; set before jax loads.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".cache" / "jax-tests"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

# jax's CPU Cholesky / eigh go through scipy's OpenBLAS, whose default threads (one per core)
# busy-wait when the other core is busy (xdist workers, mpirun ranks, another user's job): a
# 198 x 198 Cholesky took 250 ms instead of 0.8 ms. One thread per test process; set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Huge pages for glibc malloc in every `distnqs` subprocess (see the Makefile's HUGEPAGES: XLA's
# per-step buffers otherwise cost a third of a run's CPU time in page faults). `make test` sets it
# for this process too; the dynamic loader reads it at start, so here it reaches subprocesses only.
os.environ.setdefault("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")

# Most in-process unit tests are compile-bound (small problems, many shapes): LLVM's expensive
# passes cost more than they save there (tests/test_naqs.py: 201 -> 136 CPU-s with a cold cache).
# The same holds for the `distnqs` subprocesses of the plumbing tests (resume, signals, faults, CLI,
# Slurm: a few steps each, compared with runs made with the same flags), which get these flags
# from clean_env(); the physics runs (long enough for optimized code to pay) pass
# user_compile=True and compile exactly as a user's run does.
# XLA's CPU fusion emitters (on by default) make faster code and compile much more slowly: with them
# off, tests/test_naqs.py + tests/test_fast_update.py take 97 instead of 158 CPU-s with a cold cache
# (a NAQS step then runs ~1.5x slower, which is why the physics runs and RUN_TIME_BOUND keep them).
FAST_COMPILE_XLA_FLAGS = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
                          " --xla_cpu_use_fusion_emitters=false")
os.environ.setdefault("XLA_FLAGS", FAST_COMPILE_XLA_FLAGS)

import distnqs  # noqa: E402,F401  (x64 and process set-up before jax)
from hypothesis import settings  # noqa: E402

# The property tests draw the same examples on every run (and in CI) unless a developer asks for
# new ones (HYPOTHESIS_PROFILE=explore): a red CI is then reproducible here, and exploring new
# examples is a deliberate act, not a lottery at merge time.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DATA_DIR = REPO / "tests" / "data"  # reference values the tests use, copied with their sources (README there)
BIN = Path(sys.executable).parent


# XLA options for the few in-process programs that are run-time bound (many samples or steps): the
# fast-compile flags above turn the backend's optimizations off, which pays only in compile-bound tests.
RUN_TIME_BOUND = {"xla_backend_optimization_level": 2, "xla_cpu_use_fusion_emitters": True}


def all_spin_configs(n: int) -> np.ndarray:
    """All :math:`2^n` configurations in {-1, +1}^n, in ``itertools.product([-1, 1], repeat=n)`` order
    (site 0 slowest), built in numpy (a nested list through ``jnp.asarray`` takes ~40 s at n = 16)."""
    bits = (np.arange(2**n)[:, None] >> np.arange(n - 1, -1, -1)) & 1
    return 2.0 * bits - 1.0


def exact_reference(model: str, Lx: int, Ly: int, pbc: bool, G: float | None = None) -> dict:
    """The entry of tests/data/exact_small.json for one lattice."""
    rows = exact_small()
    for r in rows:
        if r["model"] == model and r["Lx"] == Lx and r["Ly"] == Ly and r["pbc"] == pbc and (G is None or abs(r.get("G", 0) - G) < 1e-9):
            return r
    raise KeyError((model, Lx, Ly, pbc, G))


def exact_small() -> list[dict]:
    """All rows of tests/data/exact_small.json (Lanczos ground states, Pauli units, J = 1)."""
    return json.loads((DATA_DIR / "exact_small.json").read_text())


def literature() -> dict:
    """The package's literature values (distnqs/data/literature.json)."""
    from distnqs.reference_data import literature as packaged

    return packaged()


def mpirun_available() -> bool:
    try:
        import mpi4jax  # noqa: F401
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return shutil.which("mpirun", path=str(BIN)) is not None or shutil.which("mpirun") is not None


def mpirun_cmd(np_: int) -> list[str]:
    exe = shutil.which("mpirun", path=str(BIN)) or shutil.which("mpirun")
    return [exe, "-np", str(np_)]


def clean_env(user_compile: bool = False) -> dict:
    """This process's environment for a `distnqs` subprocess: no process set-up carried over, the
    venv's tools first; XLA flags as a user's run has them if ``user_compile``, else the fast-compile
    ones (above)."""
    env = dict(os.environ)
    for var in ("XLA_FLAGS", "_DISTNQS_CONFIGURED", "DISTNQS_NO_MPI"):
        env.pop(var, None)
    if not user_compile:
        env["XLA_FLAGS"] = FAST_COMPILE_XLA_FLAGS
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(args: list[str], np_: int = 1, timeout: float = 600, check: bool = False, env_extra: dict | None = None,
            user_compile: bool = False):
    """Run ``distnqs ARGS`` (under ``mpirun -np NP`` when NP > 1); returns CompletedProcess.
    ``user_compile``: XLA flags as a user's run has them (physics runs), see clean_env()."""
    cmd = [sys.executable, "-m", "distnqs", *args]
    if np_ > 1:
        cmd = mpirun_cmd(np_) + cmd
    env = clean_env(user_compile)
    env.update(env_extra or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def run_script(script: str, np_: int = 2, timeout: float = 600, args: list[str] | None = None):
    """Run a Python file under ``mpirun -np NP`` and return CompletedProcess (raises on failure)."""
    cmd = mpirun_cmd(np_) + [sys.executable, script, *(args or [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=clean_env(), cwd=REPO)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def assert_one_line_error(proc, *fragments, status: int = 2) -> str:
    """``proc`` (a CompletedProcess) ended with ``status`` and exactly one ``distnqs: error:`` line
    on stderr holding every fragment, and no traceback; returns that line."""
    assert proc.returncode == status, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("distnqs: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


def assert_same_final_checkpoints(a: Path, b: Path) -> tuple[dict, dict]:
    """The newest checkpoints of run directories ``a`` and ``b`` hold the same step and bit-identical
    parameters, optimizer (or integrator) state and every rank's sampler state; returns both."""
    from distnqs.io import checkpoint

    ca = checkpoint.read(checkpoint.list_checkpoints(a)[-1][1])
    cb = checkpoint.read(checkpoint.list_checkpoints(b)[-1][1])
    assert ca["step"] == cb["step"]
    for group in ("params", "opt_state"):
        assert len(ca[group]) == len(cb[group])
        for x, y in zip(ca[group], cb[group]):
            assert np.array_equal(x, y), group
    assert len(ca["sampler"]) == len(cb["sampler"])
    for ra, rb in zip(ca["sampler"], cb["sampler"]):
        for x, y in zip(ra, rb):
            assert np.array_equal(x, y), "sampler"
    return ca, cb


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# `make test` sets DISTNQS_REQUIRE_MPI=1: there a missing MPI stack fails the MPI tests instead of skipping them.
requires_mpi = pytest.mark.skipif(
    not mpirun_available() and not os.environ.get("DISTNQS_REQUIRE_MPI"), reason="needs mpi4py, mpi4jax and mpirun"
)


# Longest first (seconds measured in a 2-worker `make test` on the 2-core machine, cold cache):
# under --dist loadgroup, pytest-xdist hands out the xdist_groups first (largest first), then the
# single tests in collection order, so a 7-minute physics run collected last would leave one
# core idle at the end. Unlisted tests keep their order after these.
# Moving tests to the front separates them from their module's other tests, and pytest tears a
# module-scoped fixture down whenever the next test on a worker is from another module: the
# expensive run fixtures (reference runs, the VAE training, the wheel) are therefore
# session-scoped, built once per worker (their tests share an xdist_group: once in all).
SLOW_FIRST = (
    "test_naqs_physics.py::test_heisenberg_4x4_open_two_ranks",  # 426
    "test_naqs_physics.py::test_tfim_4x4_open_G3_two_ranks",  # 177
    "test_dynamics_resume.py::test_evolve_sigusr1_kill_then_resume_is_bit_identical",  # 136
    "test_slurm.py::test_requeue_and_usr1_before_the_time_limit_resume_bit_identically",  # 125 + set-up
    "test_naqs_physics.py::test_direct_sampling_is_ergodic_where_metropolis_is_not",  # 115
    "test_physics_mpi.py::test_ground_state_energy_with_two_ranks",  # 111, 62, 50
    "test_dynamics_resume.py::test_evolve_two_ranks_stop_then_resume_is_bit_identical",  # 99
    "test_resume.py::test_two_ranks_preempted_by_signal_resume_bit_identically",  # 91 with its fixture
    "test_resume.py::test_resume_on_a_different_number_of_ranks_warns_and_continues",  # 66
    "test_io_faults.py::test_disk_full_at_a_checkpoint_ends_with_one_line_and_resumes",  # 90 with its fixture
    "test_resume.py::test_stop_and_resume_is_bit_identical",  # 68 with its fixture
)


@pytest.fixture(autouse=True)
def _xdist_group_is_honoured(request):
    """Under ``--dist loadgroup`` (make test), a test of an xdist_group fails at once if pytest-xdist
    did not group it: the session fixture its group shares would be built on every worker, and the
    Slurm tests would drive one cluster from two workers (pytest 9.2 with pytest-xdist <= 3.8, see
    pyproject.toml)."""
    if getattr(request.config.option, "loadgroup", False) and request.node.get_closest_marker("xdist_group") \
            and "@" not in request.node.nodeid:
        pytest.fail(f"--dist loadgroup is not grouping (pytest {pytest.__version__}): {request.node.nodeid}", pytrace=False)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = item.nodeid.split("/")[-1]
        return next((i for i, prefix in enumerate(SLOW_FIRST) if name.startswith(prefix)), len(SLOW_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order
