"""minSR (distnqs.optim.minsr) against dense SR on the same samples: the push-through identity
x = Obar^T (Obar Obar^T + eps)^-1 epsbar = (S + eps)^-1 g, for real parameters with a real log psi,
real parameters with a complex log psi, and complex parameters; fewer and more samples than
parameters. The 2-rank distribution is tested in tests/test_mpi_equivalence.py."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from distnqs.estimators import energy_gradient
from distnqs.models import RBM, Ansatz
from distnqs.operators import build_lattice, local_energy, tfim
from distnqs.optim.minsr import minsr_rows
from distnqs.optim.sr import SR

N = 8


class ModulusPhase(nn.Module):
    """log psi = RBM_a(s) + i RBM_p(s) with real parameters: a complex, non-holomorphic log psi."""

    @nn.compact
    def __call__(self, s):
        return RBM(alpha=0.5, init_std=0.2, name="modulus")(s) + 1j * RBM(alpha=0.5, init_std=0.2, name="phase")(s)


MODELS = {  # number of real parameters: 80, 88, 160
    "real": lambda: RBM(alpha=1, init_std=0.2),
    "real-params-complex-logpsi": ModulusPhase,
    "complex-params": lambda: RBM(alpha=1, param_dtype=jnp.complex128, init_std=0.2),
}


def _problem(model, n_samples):
    H = tfim(build_lattice({"kind": "chain", "Lx": N, "pbc": True}), G=1.1)
    ansatz = Ansatz(MODELS[model](), N)
    params = ansatz.init(jax.random.PRNGKey(0))
    samples = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (n_samples, N)), 1.0, -1.0)

    @jax.jit  # one compilation (eager dispatch compiles every small op: slow on a busy machine)
    def estimate(params, samples):
        e_loc = local_energy(ansatz.log_psi, params, H, samples)
        e_mean = jnp.mean(e_loc)
        return e_loc, e_mean, energy_gradient(ansatz.log_psi, params, samples, e_loc, e_mean, n_samples)

    return (ansatz, params, samples, *estimate(params, samples))


@pytest.mark.parametrize("n_samples", [24, 200], ids=["fewer-samples-than-parameters", "more-samples"])
@pytest.mark.parametrize("model", list(MODELS))
def test_minsr_equals_dense_sr_on_the_same_samples(model, n_samples):
    ansatz, params, samples, e_loc, e_mean, grad = _problem(model, n_samples)
    P = ravel_pytree(params)[0].size
    assert (n_samples < P) == (n_samples == 24)

    @jax.jit
    def both(params, samples, e_loc, e_mean, grad):
        a = (ansatz.log_psi, params, samples, grad, n_samples)
        dense = SR(diag_shift=1e-3, solver="dense").solve_with_info(*a)
        minsr = SR(diag_shift=1e-3, solver="minsr").solve_with_info(*a, e_loc=e_loc, e_mean=e_mean)
        return dense, minsr

    (x_dense, xSx_dense), (x_minsr, xSx_minsr) = both(params, samples, e_loc, e_mean, grad)
    xd, xm = ravel_pytree(x_dense)[0], ravel_pytree(x_minsr)[0]
    scale = np.max(np.abs(xd))
    assert scale > 1e-2  # a non-trivial direction was compared
    np.testing.assert_allclose(xm, xd, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(xSx_minsr, xSx_dense, rtol=1e-8)


class HalfPhase(nn.Module):
    """A complex-parameter RBM whose phase is halved: not holomorphic in its parameters."""

    @nn.compact
    def __call__(self, s):
        out = RBM(alpha=1, param_dtype=jnp.complex128, init_std=0.2)(s)
        return jnp.real(out) + 0.5j * jnp.imag(out)


@pytest.mark.parametrize("n_samples", [24, 200], ids=["fewer-samples-than-parameters", "more-samples"])
def test_holomorphic_minsr_equals_dense_sr(n_samples):
    """The complex N x N form (minsr_holomorphic) gives the real-view dense SR update of a complex RBM."""
    ansatz, params, samples, e_loc, e_mean, grad = _problem("complex-params", n_samples)

    @jax.jit
    def both(params, samples, e_loc, e_mean, grad):
        a = (ansatz.log_psi, params, samples, grad, n_samples)
        dense = SR(diag_shift=1e-3, solver="dense").solve_with_info(*a)
        return dense, SR(diag_shift=1e-3, solver="minsr", minsr_holomorphic=True).solve_with_info(*a, e_loc=e_loc, e_mean=e_mean)

    (x_dense, xSx_dense), (x_minsr, xSx_minsr) = both(params, samples, e_loc, e_mean, grad)
    assert jax.tree_util.tree_structure(x_minsr) == jax.tree_util.tree_structure(params)
    xd, xm = ravel_pytree(x_dense)[0], ravel_pytree(x_minsr)[0]
    scale = np.max(np.abs(xd))
    assert scale > 1e-2
    np.testing.assert_allclose(xm, xd, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(xSx_minsr, xSx_dense, rtol=1e-8)


def test_holomorphic_check():
    from distnqs.optim.minsr import check_holomorphic

    spins = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(2), 0.5, (3, N)), 1.0, -1.0)
    for module, expected in ((MODELS["complex-params"](), True), (HalfPhase(), False)):
        ansatz = Ansatz(module, N)
        assert check_holomorphic(ansatz.log_psi, ansatz.init(jax.random.PRNGKey(0)), spins) is expected
    real = Ansatz(MODELS["real"](), N)
    with pytest.raises(ValueError, match="complex parameters"):
        check_holomorphic(real.log_psi, real.init(jax.random.PRNGKey(0)), spins)


def test_minsr_rows_give_the_gradient_and_the_qgt():
    """Obar^T epsbar = g (the factor 2 and the real/imaginary rows) and Obar^T Obar = S."""
    from distnqs.estimators import qgt_dense

    ansatz, params, samples, e_loc, e_mean, grad = _problem("real-params-complex-logpsi", 50)
    rows, eps, S = jax.jit(lambda p, s, e, m: (*minsr_rows(ansatz.log_psi, p, s, e, m, 50), qgt_dense(ansatz.log_psi, p, s, 50)))(
        params, samples, e_loc, e_mean
    )
    assert rows.shape == (100, ravel_pytree(params)[0].size)  # 2N rows for a complex log psi
    np.testing.assert_allclose(rows.T @ eps, ravel_pytree(grad)[0], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(rows.T @ rows, S, rtol=1e-10, atol=1e-14)


def test_minsr_pseudo_inverse():
    """rcond > 0: with no eigenvalue cut it equals the Cholesky solve; at zero shift with fewer
    samples than parameters it is the minimum-norm solution of Obar x = epsbar (least squares)."""
    ansatz, params, samples, e_loc, e_mean, grad = _problem("complex-params", 24)

    @jax.jit
    def solves(params, samples, e_loc, e_mean, grad):
        a = (ansatz.log_psi, params, samples, grad, 24)
        kw = {"e_loc": e_loc, "e_mean": e_mean}
        chol = SR(diag_shift=1e-2, solver="minsr").solve(*a, **kw)
        eig = SR(diag_shift=1e-2, solver="minsr", minsr_rcond=1e-14).solve(*a, **kw)
        return chol, eig, SR(diag_shift=0.0, solver="minsr", minsr_rcond=1e-10).solve_with_info(*a, **kw), minsr_rows(*a[:3], e_loc, e_mean, 24)

    chol, eig, (x, xSx), (rows, eps) = solves(params, samples, e_loc, e_mean, grad)
    chol, eig, x = (ravel_pytree(v)[0] for v in (chol, eig, x))
    np.testing.assert_allclose(eig, chol, rtol=0, atol=1e-10 * np.max(np.abs(chol)))
    expected = np.linalg.lstsq(np.asarray(rows), np.asarray(eps), rcond=None)[0]
    assert np.max(np.abs(np.asarray(rows) @ expected - np.asarray(eps))) < 1e-8  # Obar x = epsbar is solvable
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-8 * np.max(np.abs(expected)))
    np.testing.assert_allclose(xSx, np.sum(np.asarray(rows @ x) ** 2), rtol=1e-10)


def test_minsr_needs_the_local_energies():
    ansatz, params, samples, _, _, grad = _problem("real", 24)
    with pytest.raises(ValueError, match="local energies"):
        SR(solver="minsr").solve(ansatz.log_psi, params, samples, grad, 24)


def test_minsr_config(tmp_path, capsys):
    """``[optimizer] solver = "minsr"`` builds the minSR solver (and counts T in the memory
    estimate); a misspelt solver, a negative ``minsr_rcond`` or ``minsr_holomorphic`` with real
    parameters is one ``distnqs: error:`` line."""
    import tomli_w

    from distnqs import cli, config, memory
    from distnqs.operators import build_lattice as lattice_of
    from distnqs.optim import build_optimizer

    cfg = {
        "seed": 0, "n_steps": 3,
        "lattice": {"kind": "chain", "Lx": 6, "pbc": True},
        "hamiltonian": {"model": "tfim", "G": 1.0},
        "ansatz": {"model": "rbm", "alpha": 1},
        "sampler": {"n_samples": 64, "n_chains": 8, "n_discard": 2},
        "optimizer": {"kind": "sgd", "learning_rate": 0.02, "sr": True, "solver": "minsr", "minsr_rcond": 1e-12},
    }
    resolved = config.resolve(cfg)
    sr = build_optimizer(resolved["optimizer"], 3).sr
    assert (sr.solver, sr.minsr_rcond) == ("minsr", 1e-12)
    _, words = memory.estimate(resolved, lattice_of(resolved["lattice"]), Ansatz(RBM(alpha=1), 6), 2)
    assert "minSR" in words
    for bad, fragment in (
        ({"solver": "minSR"}, "solver 'minSR'"),
        ({"minsr_rcond": -1.0}, "minsr_rcond"),
        ({"minsr_holomorphic": True}, "minsr_holomorphic needs complex parameters"),  # a real RBM
    ):
        path = tmp_path / "bad.toml"
        path.write_text(tomli_w.dumps({**cfg, "optimizer": {**cfg["optimizer"], **bad}}))
        capsys.readouterr()
        assert cli.main(["run", str(path), "--outdir", str(tmp_path / "out"), "--check"]) == 2
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("distnqs: error: ") and fragment in lines[0], lines
