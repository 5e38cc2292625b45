"""NAQS physics: ground states on 2 MPI ranks against exact diagonalization,
and the ergodicity point of Sharir et al., PRL 124, 020503 (2020)."""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, all_spin_configs, exact_reference, requires_mpi, run_cli
from distnqs import config as config_mod
from distnqs.models.naqs import NAQS
from distnqs.operators.exact import ground_state_energy
from distnqs.problem import build_problem
from distnqs.samplers import LocalRule, MetropolisSampler
from distnqs.samplers.base import SamplerState


def _run(config_name, tmp_path, n_steps=None, dtype=None, n_samples=None, eval_steps=None, learning_rate=None):
    """``distnqs run configs/naqs/CONFIG`` on 2 ranks (optionally with fewer steps, another
    ``[ansatz] dtype``, ``[sampler] n_samples``, ``[run] eval_steps`` or initial
    ``[optimizer] learning_rate``); returns summary.json."""
    out = tmp_path / "run"
    cfg_path = REPO / "configs" / "naqs" / config_name
    if any(x is not None for x in (n_steps, dtype, n_samples, eval_steps, learning_rate)):
        text = cfg_path.read_text()
        assert "\nn_steps = " in text and "\n[ansatz]\n" in text
        for key, value in (("n_steps", n_steps), ("n_samples", n_samples), ("eval_steps", eval_steps),
                           ("learning_rate", learning_rate)):
            if value is not None:
                text, n = re.subn(rf"\n{key} = [\d.]+(?=\s)", f"\n{key} = {value}", text)
                assert n == 1, key
        if dtype is not None:
            text = text.replace("\n[ansatz]\n", f'\n[ansatz]\ndtype = "{dtype}"\n')
        cfg_path = tmp_path / config_name
        cfg_path.write_text(text)
    proc = run_cli(["run", str(cfg_path), "--outdir", str(out)], np_=2, timeout=1200, user_compile=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


@requires_mpi
@pytest.mark.mpi
@pytest.mark.slow
def test_tfim_4x4_open_G3_two_ranks(tmp_path):
    """configs/naqs/tfim4_G3.0.toml (distributed minSR, 30 steps) on 2 ranks, with 512 samples per step
    instead of 1024 (minSR's N_s x N_s solve: steps 3.3x faster) and the final energy from 32 x 512 samples:
    relative error <= 1e-4 against exact_small.json. Measured 3.5e-6 (statistical error 2.0e-5); the
    config's 1024 samples: 1.76e-5 (statistical 1.7e-5); 50 steps: 3.7e-6."""
    summary = _run("tfim4_G3.0.toml", tmp_path, n_samples=512, eval_steps=32)
    exact = exact_reference("tfim", 4, 4, False, G=3.0)
    assert summary["n_ranks"] == 2 and summary["step"] == summary["n_steps"]
    rel = abs(summary["energy_per_site"] - exact["E_per_site"]) / abs(exact["E_per_site"])
    assert rel <= 1e-4, f"relative error {rel:.2e}"
    assert summary["reference"]["relative_error"] == pytest.approx(rel, rel=1e-6, abs=1e-12)
    assert summary["acceptance"] == 1.0  # direct sampling: every sample accepted


@requires_mpi
@pytest.mark.mpi
@pytest.mark.slow
def test_heisenberg_4x4_open_two_ranks(tmp_path):
    """configs/naqs/heisenberg4.toml (Marshall sign + zero magnetization) cut to 240 steps with
    the cosine schedule starting at lr 0.025 instead of 0.02, 2 ranks, float32 layers (``dtype``:
    twice as fast on this CPU; conditionals and sums stay float64).

    The full 800-step float64 config reaches a relative error below 1e-3 (README); in CI's time
    240 steps reach 1.58e-3 (statistical error 2.5e-4; 300 steps at lr 0.02: 1.56e-3), checked
    against 2.5e-3.
    """
    summary = _run("heisenberg4.toml", tmp_path, n_steps=240, dtype="float32", learning_rate=0.025)
    exact = exact_reference("heisenberg", 4, 4, False)
    rel = abs(summary["energy_per_site"] - exact["E_per_site"]) / abs(exact["E_per_site"])
    assert rel <= 2.5e-3, f"relative error {rel:.2e}"
    assert summary["observables"]["m"]["mean"] == 0.0  # every sample has Sz = 0 exactly
    assert summary["observables"]["m2"]["mean"] == 0.0


ERGODICITY_CONFIG = """
seed = 3
n_steps = {n_steps}
[lattice]
kind = "square"
Lx = {L}
Ly = {L}
pbc = false
[hamiltonian]
model = "tfim"
G = {G}
[ansatz]
model = "naqs"
depth = 2
features = 8
kernel_size = 5
activation = "silu"
[sampler]
kind = "direct"
n_samples = 512
[optimizer]
kind = "adam"
learning_rate = 0.03
sr = false
"""


@pytest.mark.slow
def test_direct_sampling_is_ergodic_where_metropolis_is_not():
    r"""Ferromagnetic TFIM (G = 2 < G_c ~ 3): a trained NAQS puts weight on both ordered
    lobes :math:`m > 0` and :math:`m < 0`. Direct samples reproduce the model's own
    lobe weight :math:`P_+ = \sum_{m(s)>0}|\psi(s)|^2` (computed exactly over all
    :math:`2^{16}` configurations) and its :math:`\langle|m|\rangle`, while single-flip
    Metropolis chains of the same :math:`|\psi|^2`, started fully polarized, over-weight
    the :math:`m > 0` lobe for their first 10 sweeps (the paper's ergodicity point; on
    this small lattice the chains do tunnel eventually, so the check is on the bias of
    short chains against the exact lobe weight)."""
    L, n_steps, G = 4, 80, 2.0
    cfg = config_mod.parse(ERGODICITY_CONFIG.format(L=L, n_steps=n_steps, G=G))
    problem = build_problem(cfg)
    params, opt_state, sampler_state = problem.init_state()
    step = problem.step.jit()
    for t in range(n_steps):
        params, opt_state, sampler_state, metrics = step(params, opt_state, sampler_state, jnp.asarray(t, jnp.int32))
    e_exact = ground_state_energy(problem.hamiltonian) / L**2  # Lanczos
    e = float(np.real(metrics["energy"].mean)) / L**2
    assert abs(e - e_exact) / abs(e_exact) < 5e-3  # trained (the lobe weights hardly change the energy)

    N = L * L
    module, rparams = problem.ansatz.module, params
    configs = jnp.asarray(all_spin_configs(N))
    probs = np.asarray(jnp.exp(2 * jnp.real(jax.jit(problem.ansatz.log_psi)(rparams, configs))))
    m_all = np.asarray(configs).mean(axis=1)
    p_plus, p_minus = probs[m_all > 0].sum(), probs[m_all < 0].sum()
    assert abs(probs.sum() - 1.0) < 1e-10
    assert p_plus > 0.15 and p_minus > 0.15  # the model is bimodal: both lobes carry weight

    n_direct = 4000
    direct = np.asarray(module.apply({"params": rparams}, jax.random.PRNGKey(11), n_direct, method=NAQS.sample))
    m_direct = direct.mean(axis=1)
    sigma = np.sqrt(p_plus * (1 - p_plus) / n_direct)
    assert abs(np.mean(m_direct > 0) - p_plus) < 4 * sigma  # direct samples see both lobes in the model's weights
    abs_m = float(np.sum(probs * np.abs(m_all)))
    assert abs(np.abs(m_direct).mean() - abs_m) < 4 * np.abs(m_direct).std() / np.sqrt(n_direct)
    assert abs_m > 0.4  # ordered

    n_chains, per_chain = 64, 10
    metro = MetropolisSampler(rule=LocalRule(), n_sites=N, n_chains=n_chains, n_samples_per_chain=per_chain, n_discard=0)
    zero = jnp.zeros((), jnp.int32)
    polarized = SamplerState(jnp.ones((n_chains, N)), zero, zero)
    samples, st = jax.jit(lambda p, s, k: metro.sample(problem.ansatz.log_psi, p, s, k))(rparams, polarized, jax.random.PRNGKey(12))
    m_chain = np.asarray(samples).mean(axis=2)  # (chains, 50 sweeps)
    assert int(st.n_accepted) > 0.05 * int(st.n_proposed)  # the chains move ...
    # chains started at m = +1 over-weight their starting lobe (measured 0.80 against P+ = 0.60 at this seed;
    # on 4x4 the barrier is low enough that they do tunnel: the bias shrinks with the sweeps, more slowly the larger L)
    assert np.mean(m_chain > 0) > p_plus + 0.1 and np.mean(m_chain[:, 0] > 0) > 0.95
