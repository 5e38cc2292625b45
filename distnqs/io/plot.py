r"""``distnqs plot D``: PNG of the energy (and the relative error to the reference) against step;
for an evolution (``distnqs evolve``, a log with a ``t`` column) :math:`\langle\sigma^x\rangle(t)`,
:math:`\langle\sigma^z\sigma^z\rangle(t)` and the energy with error bars, and the exact curves when
the run stored them (``exact.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from distnqs.errors import DistnqsError
from distnqs.io.log import read_log


def plot_run(outdir: Path, output=None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not (outdir / "log.h5").exists():
        raise DistnqsError(f"{outdir} has no log.h5 to plot")
    log = read_log(outdir / "log.h5")
    if log["step"].size == 0:
        raise DistnqsError(f"{outdir}/log.h5 has no rows yet")
    if "t" in log:
        return plot_evolution(outdir, log, output)
    reference = None
    for name in ("reference.json", "summary.json"):
        path = outdir / name
        if path.exists():
            data = json.loads(path.read_text())
            ref = data if name == "reference.json" else data.get("reference")
            if ref and ref.get("energy") is not None:
                reference = ref["energy"]
                break
    step = log["step"] + 1
    e, err = log["energy_mean"], log["energy_error"]
    fig, axes = plt.subplots(2 if reference is not None else 1, 1, figsize=(7, 6 if reference is not None else 3.5), sharex=True, squeeze=False)
    ax = axes[0, 0]
    ax.plot(step, e, lw=1, label="VMC energy")
    ax.fill_between(step, e - err, e + err, alpha=0.3)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label="exact")
        lo = min(reference, np.nanmin(e))
        hi = np.nanpercentile(e, 90)
        pad = 0.1 * (hi - lo) if hi > lo else 0.01 * abs(lo)
        ax.set_ylim(lo - pad, hi + pad)
        rel = np.abs((e - reference) / reference)
        axes[1, 0].semilogy(step, rel, lw=1)
        axes[1, 0].set_ylabel("relative error")
        axes[1, 0].set_xlabel("step")
    else:
        ax.set_xlabel("step")
    ax.set_ylabel("energy")
    ax.legend()
    ax.set_title(outdir.name)
    fig.tight_layout()
    out = Path(output) if output else outdir / "energy.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_evolution(outdir: Path, log: dict, output=None) -> Path:
    """Observables of an evolution against time, with error bars (and exact curves from ``exact.json``)."""
    import matplotlib.pyplot as plt

    exact = None
    if (outdir / "exact.json").exists():
        exact = json.loads((outdir / "exact.json").read_text())
    t = np.asarray(log["t"])
    final, imaginary = None, False
    if (outdir / "summary.json").exists():
        summary = json.loads((outdir / "summary.json").read_text())
        imaginary = bool(summary.get("imaginary"))
        if summary.get("kind") == "evolve" and summary.get("observables"):
            final = (summary["t"], summary["observables"])
    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    panels = (("sx", "sx_error", r"$\langle\sigma^x\rangle$"), ("szsz", "szsz_error", r"$\langle\sigma^z_i\sigma^z_j\rangle_{nn}$"),
              ("energy_mean", "energy_error", "energy"))
    for ax, (col, err, label) in zip(axes, panels):
        y, e = np.asarray(log[col]), np.asarray(log[err])
        if final is not None:
            key = "energy" if col == "energy_mean" else col
            t_plot, y, e = np.append(t, final[0]), np.append(y, final[1][key]["mean"]), np.append(e, final[1][key]["error"])
        else:
            t_plot = t
        ax.errorbar(t_plot, y, yerr=e, fmt="o", ms=3, capsize=2, lw=1, label="t-VMC")
        if exact is not None:
            key = "energy" if col == "energy_mean" else col
            ax.plot(exact["t"], exact[key], "k-", lw=1, label="exact")
        ax.set_ylabel(label)
    axes[0].legend()
    axes[-1].set_xlabel("imaginary time $\\tau$" if imaginary else "time $t$")
    axes[0].set_title(outdir.name)
    fig.tight_layout()
    out = Path(output) if output else outdir / "dynamics.png"
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
