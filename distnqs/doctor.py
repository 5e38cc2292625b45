"""``distnqs doctor``: what runs where, checked before any work.

Alone, or under ``mpirun``/``srun`` with the same arguments as a job, every
rank reports one line (rank 0 prints them in rank order)::

    rank 0/2 host=n1 tasks=2(PMI_SIZE) local=0/2 cores=0(distnqs) jax=0.4.x backend=cpu devices=TFRT_CPU_0
    CUDA_VISIBLE_DEVICES=0 mpi4jax=0.9.1.post2 cuda_ext=no cuda_mpi=off mpi="MPICH Version: 4.2" x64=on allreduce=ok

then an allreduce (sum over ranks) of a small array placed on each rank's
own device is compared with its known result. The exit status is non-zero,
with one ``distnqs: error:`` line, when the MPI world does not match the
launcher's task count (``srun`` without an MPI plugin), when two ranks share
one GPU without ``--share-gpu``, when ``--require-gpu`` finds a CPU backend,
or when the allreduce gives a wrong result.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys

import jax
import jax.numpy as jnp
import numpy as np

from distnqs import comm, launch
from distnqs.devices import GPU_BACKENDS
from distnqs.errors import DistnqsError

EXIT_PROBLEM = 2


def _cpu_list(cores) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    cores = sorted(cores)
    parts, start = [], None
    for i, c in enumerate(cores):
        if start is None:
            start = c
        if i + 1 == len(cores) or cores[i + 1] != c + 1:
            parts.append(str(start) if start == c else f"{start}-{c}")
            start = None
    return ",".join(parts) or "?"


def _gpu_identity(device) -> str:
    """The physical GPU behind a jax device: its entry in CUDA_VISIBLE_DEVICES (an index or a UUID)."""
    ordinal = getattr(device, "local_hardware_id", None)
    if ordinal is None:
        ordinal = device.id
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[ordinal] if ordinal < len(visible) else str(ordinal)


def _allreduce_check() -> tuple[bool, str]:
    r"""Sum over ranks of :math:`x_r = (0, 1, \dots, 7) + r` on each rank's device, inside jit."""
    device = jax.devices()[0]
    n = comm.size()
    x = jax.device_put(jnp.arange(8, dtype=jnp.float32) + comm.rank(), device)
    got = np.asarray(jax.jit(comm.sum)(x))
    want = n * np.arange(8, dtype=np.float32) + n * (n - 1) / 2
    ok = bool(np.array_equal(got, want))
    return ok, "ok" if ok else f"WRONG({got.tolist()} != {want.tolist()})"


def rank_report() -> dict:
    """This rank's facts (a dict) and its one-line description under ``"line"``."""
    name, tasks = launch.launcher_size_source()
    mpi = comm.mpi_info()
    backend = jax.default_backend()
    devices = jax.local_devices()
    try:
        cores = _cpu_list(os.sched_getaffinity(0))
    except AttributeError:
        cores = "?"
    local_rank = launch._first_int(launch._LOCAL_RANK_VARS, 0)
    local_size = max(1, launch._first_int(launch._LOCAL_SIZE_VARS, 1))
    ok, allreduce = _allreduce_check()
    facts = {
        "host": socket.gethostname(),
        "rank": comm.rank(),
        "size": comm.size(),
        "launcher_tasks": tasks,
        "launcher_var": name,
        "local_rank": local_rank % local_size,
        "local_size": local_size,
        "cores": cores,
        "binding": os.environ.get("DISTNQS_CPU_BINDING", "none"),
        "jax": jax.__version__,
        "backend": backend,
        "devices": [str(d) for d in devices],
        "gpus": [_gpu_identity(d) for d in devices] if backend in GPU_BACKENDS else [],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "x64": bool(jax.config.jax_enable_x64),
        "allreduce_ok": ok,
        **mpi,
    }
    yes_no = {True: "yes", False: "no", None: "n/a"}
    facts["line"] = (
        f"rank {facts['rank']}/{facts['size']} host={facts['host']} tasks={tasks}({name or 'no launcher'}) "
        f"local={facts['local_rank']}/{local_size} cores={cores}({facts['binding']}) jax={facts['jax']} "
        f"backend={backend} devices={','.join(facts['devices'])} "
        f"CUDA_VISIBLE_DEVICES={facts['cuda_visible_devices'] if facts['cuda_visible_devices'] is not None else '-'} "
        f"mpi4jax={mpi['mpi4jax'] or '-'} cuda_ext={yes_no[mpi['mpi4jax_cuda']]} cuda_mpi={'on' if mpi['cuda_mpi'] else 'off'} "
        f"mpi=\"{mpi['mpi_library'] or '-'}\" x64={'on' if facts['x64'] else 'off'} allreduce={allreduce}"
    )
    return facts


def problems(reports: list[dict], require_gpu: bool, share_gpu: bool) -> list[str]:
    """What is wrong with a job, given every rank's report (the same list on every rank)."""
    found = []
    first = reports[0]
    if first["launcher_tasks"] > 1 and first["launcher_tasks"] != first["size"]:
        found.append(
            f"the launcher started {first['launcher_tasks']} tasks ({first['launcher_var']}) but MPI sees "
            f"{first['size']} rank(s): srun without --mpi=pmi2/pmix, or no mpirun?"
        )
    if require_gpu:
        cpu = [r["rank"] for r in reports if r["backend"] not in GPU_BACKENDS]
        if cpu:
            found.append(f"--require-gpu but rank(s) {cpu} run on the {reports[cpu[0]]['backend']} backend "
                         f"(jax {first['jax']}; install the GPU build: make install GPU=cuda12)")
    users: dict[tuple, list[int]] = {}
    for r in reports:
        for gpu in r["gpus"]:
            users.setdefault((r["host"], gpu), []).append(r["rank"])
    shared = {k: v for k, v in users.items() if len(v) > 1}
    if shared and not share_gpu:
        (host, gpu), ranks = next(iter(shared.items()))
        found.append(f"ranks {ranks} share GPU {gpu} on {host} (one rank per GPU; pass --share-gpu if that is meant)")
    bad = [r["rank"] for r in reports if not r["allreduce_ok"]]
    if bad:
        found.append(f"the allreduce over ranks gave a wrong result on rank(s) {bad}")
    return found


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="distnqs doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--require-gpu", action="store_true", help="fail unless every rank runs on a GPU")
    parser.add_argument("--share-gpu", action="store_true", help="several ranks per GPU are intended")
    parser.add_argument("--json", action="store_true", help="print the per-rank facts as JSON lines instead")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code:
            raise DistnqsError("distnqs doctor: bad arguments (see distnqs doctor --help)") from None
        return 0
    comm.install_abort_hook()
    report = rank_report()
    reports = comm.allgather_object(report)  # every rank takes part and decides the same exit status
    found = problems(reports, args.require_gpu, args.share_gpu)
    if comm.rank() == 0:
        for r in reports:
            print(json.dumps(r, sort_keys=True) if args.json else r["line"], flush=True)
        if found:
            print(f"distnqs: error: {found[0]}", file=sys.stderr, flush=True)
    comm.barrier()
    return EXIT_PROBLEM if found else 0
