"""`distnqs doctor` and the refusals before any work: launcher vs MPI size, device, CPU binding."""

import pytest

from conftest import requires_mpi, run_cli
from distnqs.launch import choose_cores, parse_cpu_list


def _one_error_line(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("distnqs: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_run_refused_when_launcher_has_more_tasks_than_mpi(tmp_path):
    out = tmp_path / "x"
    proc = run_cli(["run", "configs/demo.toml", "--outdir", str(out)], env_extra={"SLURM_NTASKS": "2"})
    _one_error_line(proc, "launcher started 2 tasks (SLURM_NTASKS=2)", "MPI sees 1 rank")
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
