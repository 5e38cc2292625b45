"""Statistics, HDF5 output and plots for the Ising VAE study.

Per data set of +1/-1 configurations ``(…, L, L)`` at temperature ``T``
(k_B = 1, ``N = L^2``, ``e = H/N`` with ``H = -sum_<ij> s_i s_j``, ``m = sum_i s_i / N``):

- ``E_per_site = <e>``, ``abs_m = <|m|>``, ``m2 = <m^2>``,
- ``C_per_site = N (<e^2> - <e>^2) / T^2`` (specific heat per site),
- ``chi_per_site = N (<m^2> - <|m|>^2) / T`` (susceptibility per site from ``|m|``),
- ``binder = 1 - <m^4> / (3 <m^2>^2)``.

Errors of the means: Monte Carlo data given as ``(S, R, L, L)`` (``S`` samples of ``R``
independent chains) use the spread of the ``R`` replica means
(:func:`~distnqs.generative.ising.wolff.replica_mean_and_error`); data given as
``(n, L, L)`` are treated as independent draws (``std / sqrt(n)``), which holds for
VAE samples (independent latent vectors).

Plots use matplotlib's Agg backend (files only, no display).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from distnqs.generative.ising.wolff import energy_per_site, magnetization, replica_mean_and_error  # noqa: E402

__all__ = [
    "dataset_stats",
    "em_histogram",
    "plot_em_histograms",
    "plot_latent",
    "plot_temperature_dependence",
    "plot_training_curves",
    "results_table_markdown",
    "save_h5",
]


def _mean_err(v: np.ndarray) -> tuple[float, float]:
    if v.ndim == 2:
        return replica_mean_and_error(v)
    v = v.ravel()
    err = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return float(v.mean()), err


def dataset_stats(spins, T: float) -> dict:
    """Thermal estimates of a configuration set (see module docstring); keys ``X`` and ``X_err``."""
    s = np.asarray(spins)
    L = s.shape[-1]
    N = L * L
    e = energy_per_site(s)
    m = magnetization(s)
    out = {"n": int(e.size)}
    for name, v in (("E_per_site", e), ("abs_m", np.abs(m)), ("m2", m**2)):
        out[name], out[name + "_err"] = _mean_err(v)
    ef, mf = e.ravel(), m.ravel()
    out["C_per_site"] = float(N * ef.var() / T**2)
    out["chi_per_site"] = float(N * (np.mean(mf**2) - np.mean(np.abs(mf)) ** 2) / T)
    m2 = float(np.mean(mf**2))
    out["binder"] = float(1.0 - np.mean(mf**4) / (3.0 * m2**2)) if m2 > 0 else float("nan")
    return out


def em_histogram(spins) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalized joint histogram ``P(m, e)`` on the lattice values of ``m`` (step ``2/N``) and ``e`` (step ``4/N``).

    (On the periodic lattice every row and column is a closed loop with an even
    number of unsatisfied bonds, so ``H`` changes in steps of 4.)

    Returns ``(probabilities (n_m, n_e), m_edges, e_edges)``; bins are centred on
    the attainable values ``m = -1 .. 1`` and ``e = -2 .. 2``.
    """
    s = np.asarray(spins)
    N = s.shape[-1] * s.shape[-2]
    e = energy_per_site(s).ravel()
    m = magnetization(s).ravel()
    m_edges = (np.arange(-N - 1, N + 2, 2)) / N
    e_edges = (np.arange(-2 * N - 2, 2 * N + 3, 4)) / N
    h, _, _ = np.histogram2d(m, e, bins=(m_edges, e_edges))
    return h / max(h.sum(), 1.0), m_edges, e_edges


def plot_em_histograms(path, T: float, panels: list[tuple[str, np.ndarray]], exact_E: float | None = None) -> None:
    """One PNG: a row of energy–magnetization histograms ``P(m, e)`` (log colour scale), one panel per data set."""
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n + 1.2, 3.6), squeeze=False, sharex=True, sharey=True,
                             layout="constrained")
    vmin = None
    hists = []
    for _, s in panels:
        h, me, ee = em_histogram(s)
        hists.append((h, me, ee))
        nz = h[h > 0]
        if nz.size:
            vmin = nz.min() if vmin is None else min(vmin, nz.min())
    vmin = max(vmin or 1e-6, 1e-6)
    im = None
    for ax, (title, s), (h, me, ee) in zip(axes[0], panels, hists):
        hm = np.ma.masked_where(h <= 0, h)
        im = ax.pcolormesh(me, ee, hm.T, norm=LogNorm(vmin=vmin, vmax=1.0), cmap="viridis", shading="flat")
        e_mean = float(energy_per_site(s).mean())
        ax.axhline(e_mean, color="r", lw=0.8, ls="--")
        ax.set_title(f"{title}\n<e>={e_mean:.3f}, <|m|>={np.abs(magnetization(s)).mean():.3f}", fontsize=8)
        ax.set_xlabel("m")
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-2.05, 0.8)
    axes[0, 0].set_ylabel("e = H/N")
    if exact_E is not None:
        axes[0, 0].axhline(exact_E, color="w", lw=0.8, ls=":")
    fig.suptitle(f"P(m, e) at T = {T:g}", fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="probability")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latent(path, model_name: str, items: list[tuple[float, np.ndarray, np.ndarray]]) -> None:
    """Latent means ``mu(x)`` of training configurations, one panel per temperature, coloured by ``m``.

    ``items``: ``(T, mu (n, latent_dim), m (n,))``; the first two latent axes are shown on a common,
    square scale (a latent direction the model does not use shows up as a flat band).
    """
    n = len(items)
    cols = min(n, 5)
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.9 * rows), squeeze=False)
    sc = None
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (T, mu, m) in zip(axes.ravel(), items):
        y = mu[:, 1] if mu.shape[1] > 1 else np.zeros(len(mu))
        sc = ax.scatter(mu[:, 0], y, c=m, s=2, cmap="coolwarm", vmin=-1, vmax=1, rasterized=True)
        lim = max(1.05 * float(np.abs(mu[:, :2]).max()), 0.5)  # same scale on both axes: unused directions look flat
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(f"T = {T:g}", fontsize=9)
        ax.set_xlabel("z1", fontsize=8)
        ax.set_ylabel("z2", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{model_name} VAE: latent means of training configurations (colour: m)", fontsize=10)
    fig.tight_layout()
    if sc is not None:
        fig.colorbar(sc, ax=axes.ravel().tolist(), shrink=0.7, label="m")
    fig.savefig(path, dpi=110)
    plt.close(fig)


_STYLE = {"threshold": "--", "bernoulli": ":"}


def plot_temperature_dependence(path, summary: dict) -> None:
    """``<e>``, ``<|m|>``, ``C``, ``chi`` against ``T`` (exact, Wolff training data, every model x decoding) and the ELBO terms."""
    temps = summary["temperatures"]
    T = np.array([t["T"] for t in temps])
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    quantities = [("E_per_site", "<e>"), ("abs_m", "<|m|>"), ("C_per_site", "C / N"), ("chi_per_site", "chi / N")]
    models = summary.get("models", [])
    for ax, (key, label) in zip(axes.ravel()[:4], quantities):
        if all(t.get("exact") for t in temps) and key in temps[0]["exact"]:
            ax.plot(T, [t["exact"][key] for t in temps], "k-", lw=1, label="exact")
        y = [t["training"][key] for t in temps]
        yerr = [t["training"].get(key + "_err", 0.0) for t in temps]
        ax.errorbar(T, y, yerr=yerr, fmt="ko", ms=4, mfc="none", label="Wolff (training)")
        for i, name in enumerate(models):
            for dec in ("threshold", "bernoulli"):
                ax.plot(T, [t["models"][name][dec][key] for t in temps], ls=_STYLE[dec], marker="s^"[i % 2],
                        ms=3, color=f"C{i}", label=f"{name} {dec}")
        ax.axvline(summary.get("T_c", 2.269185), color="grey", lw=0.6)
        ax.set_xlabel("T")
        ax.set_ylabel(label)
    axes[0, 0].legend(fontsize=7)
    ax = axes[1, 1]
    for i, name in enumerate(models):
        ax.plot(T, [t["models"][name]["elbo"]["recon"] for t in temps], "-", marker="o", color=f"C{i}", ms=3,
                label=f"{name} reconstruction")
        ax.plot(T, [t["models"][name]["elbo"]["kl"] for t in temps], "--", marker="x", color=f"C{i}", ms=3,
                label=f"{name} KL")
    ax.set_xlabel("T")
    ax.set_ylabel("per configuration (nats)")
    ax.set_title("ELBO terms", fontsize=9)
    ax.axvline(summary.get("T_c", 2.269185), color="grey", lw=0.6)
    ax.legend(fontsize=7)
    ax = axes[1, 2]
    for i, name in enumerate(models):
        ax.plot(T, [t["models"][name]["latent"]["max_abs_corr_m"] for t in temps], "-", marker="o",
                color=f"C{i}", ms=3, label=f"{name}: max_k |corr(mu_k, m)|")
        ax.plot(T, [t["models"][name]["latent"]["mean_sigma"] for t in temps], "--", marker="x",
                color=f"C{i}", ms=3, label=f"{name}: <sigma_z>")
    ax.set_xlabel("T")
    ax.set_title("latent space", fontsize=9)
    ax.axvline(summary.get("T_c", 2.269185), color="grey", lw=0.6)
    ax.legend(fontsize=7)
    fig.suptitle(f"{summary['L']}x{summary['L']} Ising: Wolff data vs VAE-generated configurations", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training_curves(path, summary: dict) -> None:
    """Mean training loss ``-ELBO`` per epoch, one line per temperature, one panel per model."""
    models = summary.get("models", [])
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(5 * max(1, len(models)), 3.6), squeeze=False)
    cmap = plt.get_cmap("viridis")
    temps = summary["temperatures"]
    for ax, name in zip(axes[0], models):
        for j, t in enumerate(temps):
            h = t["models"][name]["history"]
            ax.plot([r["epoch"] for r in h], [r["loss"] for r in h], color=cmap(j / max(1, len(temps) - 1)),
                    label=f"T={t['T']:g}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("-ELBO (nats / configuration)")
        ax.set_title(f"{name} VAE", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _with_error(value: float, err: float) -> str:
    """``value(err)`` with the error in units of the last shown digit (at least 4 decimals)."""
    if not (err > 0 and math.isfinite(err)):
        return f"{value:.4f}"
    decimals = min(8, max(4, -math.floor(math.log10(err))))
    return f"{value:.{decimals}f}({round(err * 10**decimals):d})"


def results_table_markdown(summary: dict) -> str:
    """Markdown tables: (1) per temperature exact / Wolff / generated ``<e>`` and ``<|m|>`` for every model and
    decoding; (2) the final ``-ELBO``, its KL part and the latent-magnetization correlation of every model."""
    models = summary.get("models", [])
    am = "\\|m\\|"  # escaped for markdown tables
    head = ["T", "e exact", "e Wolff", f"{am} exact", f"{am} Wolff"]
    for name in models:
        for dec in ("threshold", "bernoulli"):
            head += [f"e {name} {dec[:3]}", f"{am} {name} {dec[:3]}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in summary["temperatures"]:
        ex = t.get("exact") or {}
        tr = t["training"]
        row = [f"{t['T']:g}",
               f"{ex['E_per_site']:.4f}" if ex else "-",
               _with_error(tr["E_per_site"], tr["E_per_site_err"]),
               f"{ex['abs_m']:.4f}" if ex else "-",
               _with_error(tr["abs_m"], tr["abs_m_err"])]
        for name in models:
            for dec in ("threshold", "bernoulli"):
                g = t["models"][name][dec]
                row += [f"{g['E_per_site']:.3f}", f"{g['abs_m']:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    if models:
        lines.append("")
        head = ["T"]
        for name in models:
            head += [f"-ELBO {name}", f"KL {name}", f"corr(z, m) {name}"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t in summary["temperatures"]:
            row = [f"{t['T']:g}"]
            for name in models:
                mm = t["models"][name]
                row += [f"{mm['elbo']['loss']:.2f}", f"{mm['elbo']['kl']:.2f}", f"{mm['latent']['max_abs_corr_m']:.2f}"]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def save_h5(path, group: str, datasets: dict, attrs: dict | None = None) -> None:
    """Write ``datasets`` (name -> array) into ``group`` of the HDF5 file ``path`` (appending; an existing group is replaced).

    Integer spin arrays are stored gzip-compressed.
    """
    import h5py

    with h5py.File(Path(path), "a") as f:
        if group in f:
            del f[group]
        g = f.create_group(group)
        for name, arr in datasets.items():
            arr = np.asarray(arr)
            kw = {"compression": "gzip", "compression_opts": 4, "chunks": True} if arr.ndim >= 2 and arr.size > 1024 else {}
            g.create_dataset(name, data=arr, **kw)
        for k, v in (attrs or {}).items():
            g.attrs[k] = v
