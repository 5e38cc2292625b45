r"""``distnqs plot D``: PNG of the energy (and the relative error to the reference) against step,
and, when the run measured them (``[observables] correlations`` / ``structure_factor``), a second PNG
``observables.png`` (:func:`plot_observables`: correlations against distance, :math:`S(\mathbf k)`
as a heat map over the k grid, or against k on a chain);
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
    plot_observables(outdir, None if output is None else out.with_name(out.stem + "-observables.png"))
    return out


def plot_observables(outdir: Path, output=None) -> Path | None:
    r"""``observables.png`` from ``observables.h5``: correlations against distance (with error bars;
    :math:`\langle\sigma^z_0\sigma^z_r\rangle` and, for Heisenberg models,
    :math:`\langle\vec S_0\cdot\vec S_r\rangle`) and :math:`S(\mathbf k)` (heat map over
    :math:`(k_x, k_y)`, or against :math:`k` on a chain). ``None`` when the run has neither."""
    import matplotlib.pyplot as plt

    from distnqs.io.observables import FILENAME, read_observables

    path = outdir / FILENAME
    if not path.exists():
        return None
    data = read_observables(path)
    panels = [key for key in ("correlations", "structure_factor") if key in data]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, key in zip(axes[0], panels):
        block = data[key]
        kinds = [(k, label) for k, label in (("zz", r"$\sigma^z\sigma^z$"), ("spin_spin", r"$\vec S\cdot\vec S$")) if k in block]
        if key == "correlations":
            r = block["distance"]
            for kind, label in kinds:
                ax.errorbar(r, block[kind]["mean"], yerr=block[kind]["error"], fmt="o", ms=4, capsize=2, label=label)
            ax.axhline(0.0, color="k", lw=0.5)
            ax.set_xlabel("distance $|r|$")
            ax.set_ylabel("correlation $C(r)$")
            ax.legend()
            continue
        ly, lx = (int(x) for x in block["shape"])
        kind, label = kinds[-1]  # S.S when measured, else zz
        values = np.asarray(block[kind]["mean"])
        pi_value = float(block["pi"][kind]["mean"])
        if ly == 1:
            ax.errorbar(block["k"][:, 0], values, yerr=block[kind]["error"], fmt="o-", ms=4, capsize=2)
            ax.set_xlabel("$k$")
            ax.set_ylabel(f"S(k) ({label})")
        else:
            image = ax.imshow(values.reshape(ly, lx), origin="lower", cmap="viridis",
                              extent=(-np.pi / lx, 2 * np.pi - np.pi / lx, -np.pi / ly, 2 * np.pi - np.pi / ly))
            fig.colorbar(image, ax=ax, label=f"S(k) ({label})")
            ax.set_xlabel("$k_x$")
            ax.set_ylabel("$k_y$")
        ax.set_title(f"S(pi, pi) = {pi_value:.4f} ± {float(block['pi'][kind]['error']):.4f}")
    fig.suptitle(outdir.name)
    fig.tight_layout()
    out = Path(output) if output else outdir / "observables.png"
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
