"""``distnqs plot D``: PNG of the energy (and the relative error to the reference) against step."""

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
