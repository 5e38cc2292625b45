"""Which jax backend a run uses: ``[run] device = "auto" | "cpu" | "gpu"``.

``auto`` takes jax's default backend (a GPU when the CUDA build of jax finds
one, else the CPU). ``cpu`` keeps jax on the CPU even where a GPU is visible.
``gpu`` refuses to start on a CPU backend: a GPU job that silently falls back
to the CPU would run for days at a fraction of the expected speed.
"""

from __future__ import annotations

import jax

from distnqs.errors import DistnqsError

GPU_BACKENDS = ("gpu", "cuda", "rocm")


def select(device: str) -> str:
    """Apply ``device`` before the first computation; returns the backend in use."""
    if device == "cpu":
        try:
            jax.config.update("jax_platforms", "cpu")  # no effect once a backend exists: checked below
        except Exception:  # noqa: BLE001 - an older jax without the option
            pass
    backend = jax.default_backend()
    if device == "cpu" and backend != "cpu":
        raise DistnqsError(f'[run] device = "cpu" but jax already runs on {backend}; set JAX_PLATFORMS=cpu')
    if device == "gpu" and backend not in GPU_BACKENDS:
        devices = ", ".join(str(d) for d in jax.devices())
        raise DistnqsError(
            f'[run] device = "gpu" but jax runs on the {backend} backend ({devices}); '
            "install the GPU build (make install GPU=cuda12) and check `distnqs doctor`"
        )
    return backend
