"""`distnqs doctor` and the refusals before any work: launcher vs MPI size, device, CPU binding."""

import os

import pytest

from conftest import assert_one_line_error, requires_mpi, run_cli
from distnqs.launch import choose_cores, parse_cpu_list


def test_run_refused_when_launcher_has_more_tasks_than_mpi(tmp_path):
    out = tmp_path / "x"
    proc = run_cli(["run", "configs/demo.toml", "--outdir", str(out)], env_extra={"SLURM_NTASKS": "2"})
    assert_one_line_error(proc, "launcher started 2 tasks (SLURM_NTASKS=2)", "MPI sees 1 rank")
    assert not out.exists()


@pytest.mark.parametrize(
    "mask,local_rank,local_size,job_cores,want,kept",
    [
        # no binding by the launcher: every rank sees the whole node and takes its slice
        (range(8), 0, 4, 8, [0, 1], False),
        (range(8), 3, 4, 8, [6, 7], False),
        (range(2), 1, 2, 2, [1], False),
        # srun --cpu-bind / mpirun -bind-to core already gave this rank its own cores: kept as they are
        ({4, 5}, 2, 4, 8, [4, 5], True),
        ({1}, 0, 2, 2, [1], True),  # e.g. -bind-to user:1,0 puts rank 0 on core 1
        # a binding wider than one rank's share (e.g. to a socket) is split again
        (range(4), 1, 4, 8, [1], False),
        # more ranks than cores: one core each, round robin
        (range(2), 3, 4, 2, [1], False),
    ],
)
def test_choose_cores(mask, local_rank, local_size, job_cores, want, kept):
    assert choose_cores(set(mask), local_rank, local_size, job_cores) == (want, kept)


def test_parse_cpu_list():
    assert parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]


def _rank_lines(proc):
    return [ln for ln in proc.stdout.splitlines() if ln.startswith("rank ")]


def test_doctor_alone():
    proc = run_cli(["doctor"])
    assert proc.returncode == 0, proc.stderr
    lines = _rank_lines(proc)
    assert len(lines) == 1, proc.stdout
    for fragment in ("rank 0/1 ", "tasks=1", "backend=cpu", "jax=", "mpi4jax=", "x64=on", "allreduce=ok"):
        assert fragment in lines[0], lines[0]


@requires_mpi
def test_doctor_under_mpirun():
    proc = run_cli(["doctor"], np_=2, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = _rank_lines(proc)
    assert len(lines) == 2, proc.stdout
    assert lines[0].startswith("rank 0/2 ") and lines[1].startswith("rank 1/2 ")
    for line in lines:
        assert "tasks=2" in line and "allreduce=ok" in line and 'mpi="-"' not in line, line
    if len(os.sched_getaffinity(0)) >= 2:  # each rank its own share of the cores
        cores = [ln.split("cores=")[1].split("(")[0] for ln in lines]
        assert cores[0] != cores[1], cores


def test_doctor_refusals():
    proc = run_cli(["doctor", "--require-gpu"])
    assert_one_line_error(proc, "--require-gpu", "cpu backend")
    assert len(_rank_lines(proc)) == 1  # the facts are still printed
    proc = run_cli(["doctor"], env_extra={"SLURM_NTASKS": "3"})
    assert_one_line_error(proc, "launcher started 3 tasks", "MPI sees 1 rank")


def test_run_device_gpu_refused_on_cpu(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[lattice]\nkind = "chain"\nLx = 4\n[hamiltonian]\nmodel = "tfim"\nG = 1.0\n[run]\ndevice = "gpu"\n')
    proc = run_cli(["run", str(cfg), "--outdir", str(tmp_path / "o")])
    assert_one_line_error(proc, 'device = "gpu"', "cpu backend")
    assert not (tmp_path / "o").exists()
    cfg.write_text(cfg.read_text().replace('"gpu"', '"tpu"'))
    assert_one_line_error(run_cli(["run", str(cfg), "--outdir", str(tmp_path / "o")]), "run device 'tpu'", "choose one of: auto, cpu, gpu")


def _report(rank, host="n1", gpus=(), backend="cpu", size=2, tasks=2, ok=True):
    return {"rank": rank, "host": host, "gpus": list(gpus), "backend": backend, "size": size,
            "launcher_tasks": tasks, "launcher_var": "PMI_SIZE", "jax": "x", "allreduce_ok": ok}


def test_doctor_problems():
    from distnqs.doctor import problems

    good = [_report(0, gpus=["0"], backend="gpu"), _report(1, gpus=["1"], backend="gpu")]
    assert problems(good, require_gpu=True, share_gpu=False) == []
    shared = [_report(0, gpus=["0"], backend="gpu"), _report(1, gpus=["0"], backend="gpu")]
    assert "share GPU 0" in problems(shared, require_gpu=True, share_gpu=False)[0]
    assert problems(shared, require_gpu=True, share_gpu=True) == []
    other_node = [_report(0, gpus=["0"], backend="gpu"), _report(1, host="n2", gpus=["0"], backend="gpu")]
    assert problems(other_node, require_gpu=True, share_gpu=False) == []
    assert "wrong result on rank(s) [1]" in problems([_report(0), _report(1, ok=False)], False, False)[0]
    assert "launcher started 4 tasks" in problems([_report(0, size=1, tasks=4)], False, False)[0]
