"""Timing helpers shared by the benchmark scripts (distnqs steps, NetKet drivers).

Both time a first call (compilation included) and then ``steps`` calls, with
the device work finished before the clock stops.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


def time_distnqs_steps(problem, steps: int) -> dict:
    """Seconds per jitted VMC step of ``problem`` (metrics to the host every step, as the driver does).

    Returns ``s_per_step`` (mean over ``steps`` steps after the first), ``compile_s`` (first
    step minus one step), the energy (mean, error of the mean) of the last step and the number
    of real parameters.
    """
    params, opt_state, sampler_state = problem.init_state()
    step = problem.step.jit()
    t0 = time.perf_counter()
    params, opt_state, sampler_state, m = step(params, opt_state, sampler_state, jnp.asarray(0, jnp.int32))
    jax.device_get(m)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in range(1, steps + 1):
        params, opt_state, sampler_state, m = step(params, opt_state, sampler_state, jnp.asarray(t, jnp.int32))
        m = jax.device_get(m)
    per_step = (time.perf_counter() - t0) / steps
    return {
        "s_per_step": per_step,
        "compile_s": first - per_step,
        "energy": float(np.real(m["energy"].mean)),
        "energy_error": float(m["energy"].error_of_mean),
        "n_parameters": int(sum(x.size for x in jax.tree_util.tree_leaves(params))),
    }


def time_netket_driver(driver, vstate, steps: int) -> dict:
    """Seconds per step of a NetKet driver: ``run(1)`` compiles, then ``run(steps)`` is timed.

    NetKet's driver has no public single-step call, and ``run()`` can return before the
    device work is done: the clock stops only once the parameters are ready.
    """
    t0 = time.perf_counter()
    driver.run(n_iter=1, out=None, show_progress=False)
    jax.block_until_ready(vstate.parameters)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    driver.run(n_iter=steps, out=None, show_progress=False)
    jax.block_until_ready(vstate.parameters)
    per_step = (time.perf_counter() - t0) / steps
    e = driver.energy
    return {
        "s_per_step": per_step,
        "compile_s": first - per_step,
        "energy": float(np.real(e.mean)),
        "energy_error": float(e.error_of_mean),
        "n_parameters": int(vstate.n_parameters),
    }
