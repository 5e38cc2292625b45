"""``distnqs tomography CONFIG --outdir D [--force]``.

Generates exact IC-POVM data of TFIM chain ground states (ED or DMRG),
trains the conditional VAE on all fields at once, evaluates observables,
classical fidelity, susceptibility and Rényi-2 entropy against the exact
values, and writes to ``D``:

- ``summary.json``: resolved config, timings, training curve and every
  measured number (see :func:`evaluate`);
- ``data.h5``: the data set (:func:`.data.save_dataset`);
- ``model.msgpack``: trained parameters (``flax.serialization``);
- ``correlations.png``, ``magnetizations.png``, ``susceptibility.png`` and,
  when computed, ``fidelity.png``, ``renyi2.png``.

Config sections and keys (TOML; unknown keys are errors) are listed in
``_SCHEMA`` below and documented in ``docs/tomography.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

from distnqs.errors import ConfigError
from distnqs.io.files import atomic_write_text, check_outdir

# section -> key -> (type(s), default). A default of None means "derived" (see _resolve).
_REQUIRED = object()
_SCHEMA: dict[str, dict[str, tuple]] = {
    "system": {
        "n_sites": (int, _REQUIRED),
        "fields": (list, _REQUIRED),
    },
    "data": {
        "method": (str, "auto"),
        "samples_per_field": (int, 20000),
        "bond_dim": (int, 32),
        "seed": (int, 1),
        "povm_file": (str, ""),
    },
    "model": {
        "latent_dim": (int, None),
        "hidden": (list, [128, 128]),
        "dtype": (str, "float32"),
        "decoder": (str, "factorized"),
    },
    "training": {
        "steps": (int, 5000),
        "batch_size": (int, 512),
        "learning_rate": (float, 1e-3),
        "final_lr_fraction": (float, 0.05),
        "kl_warmup": (int, 1000),
        "importance_samples": (int, 1),
        "seed": (int, 0),
    },
    "evaluation": {
        "seed": (int, 2),
        "samples": (int, 50000),
        "correlation_fields": (list, None),
        "fidelity": (bool, False),
        "fidelity_estimator": (str, "prior"),
        "fidelity_latent_samples": (int, None),
        "susceptibility": (bool, True),
        "chi_samples": (int, 50000),
        "chi_temperature": (float, 0.2),
        "chi_step": (float, 0.05),
        "renyi_blocks": (list, []),
        "renyi_samples": (int, 200000),
    },
}

MAX_FIDELITY_SITES = 10
# evaluation.fidelity_latent_samples when not given: S latent draws in total ("prior"; the autoregressive
# decoder costs 4^(N-1) decoder passes per draw) or K encoder draws per outcome ("importance", 4^N K passes)
DEFAULT_FIDELITY_LATENT_SAMPLES = {("prior", "factorized"): 65536, ("prior", "autoregressive"): 16384,
                                   ("importance", "factorized"): 256, ("importance", "autoregressive"): 256}
MIN_DMRG_BOND_DIM = 25
CHUNK = 250  # optimizer steps per jitted scan (steps are rounded up to whole chunks)


# ----------------------------------------------------------------------------- config


def load_config(path: str | Path) -> dict:
    """Read and validate a tomography TOML config; returns the resolved config
    (all defaults filled in). Every problem raises ConfigError with one line."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML in {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    return resolve_config(raw, base=path.parent)


def _check_type(section: str, key: str, value, kind):
    name = f"{section}.{key}"
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{name} must be of type {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return value


def resolve_config(raw: dict, base: Path | None = None) -> dict:
    """Validate a parsed config dict against ``_SCHEMA`` and fill in defaults."""
    if not isinstance(raw, dict):
        raise ConfigError("config must be a TOML table")
    for section in raw:
        if section not in _SCHEMA:
            raise ConfigError(f"unknown config section [{section}]; allowed: {', '.join(_SCHEMA)}")
        if not isinstance(raw[section], dict):
            raise ConfigError(f"[{section}] must be a table")
    cfg: dict[str, dict] = {}
    for section, keys in _SCHEMA.items():
        given = raw.get(section, {})
        for key in given:
            if key not in keys:
                raise ConfigError(f"unknown key {section}.{key}; allowed: {', '.join(keys)}")
        cfg[section] = {}
        for key, (kind, default) in keys.items():
            if key in given:
                cfg[section][key] = _check_type(section, key, given[key], kind)
            elif default is _REQUIRED:
                raise ConfigError(f"missing required key {section}.{key}")
            else:
                cfg[section][key] = default

    sysc, data, model, train, ev = (cfg[s] for s in ("system", "data", "model", "training", "evaluation"))
    n = sysc["n_sites"]
    if n < 2:
        raise ConfigError(f"system.n_sites must be >= 2, got {n}")
    fields = _float_list("system.fields", sysc["fields"])
    if not fields:
        raise ConfigError("system.fields must list at least one field")
    if len(set(fields)) != len(fields):
        raise ConfigError("system.fields has repeated values")
    sysc["fields"] = fields

    from distnqs.generative.tomography.data import MAX_ED_SITES

    if data["method"] == "auto":
        data["method"] = "ed" if n <= MAX_ED_SITES else "mps"
    if data["method"] not in ("ed", "mps"):
        raise ConfigError(f"data.method must be 'auto', 'ed' or 'mps', got {data['method']!r}")
    if data["method"] == "ed" and n > MAX_ED_SITES:
        raise ConfigError(f"data.method = 'ed' needs n_sites <= {MAX_ED_SITES}, got {n}; use 'mps'")
    if data["method"] == "mps" and data["bond_dim"] < MIN_DMRG_BOND_DIM:
        raise ConfigError(f"data.bond_dim must be >= {MIN_DMRG_BOND_DIM} for DMRG, got {data['bond_dim']}")
    if data["samples_per_field"] < 2:
        raise ConfigError("data.samples_per_field must be >= 2")
    if data["povm_file"]:
        povm_path = Path(data["povm_file"])
        if not povm_path.is_absolute() and base is not None:
            povm_path = base / povm_path
        data["povm_file"] = str(povm_path)

    if model["latent_dim"] is None:
        model["latent_dim"] = n
    if model["latent_dim"] < 1:
        raise ConfigError("model.latent_dim must be >= 1")
    hidden = model["hidden"]
    if not hidden or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in hidden):
        raise ConfigError(f"model.hidden must be a non-empty list of positive integers, got {hidden!r}")
    if model["dtype"] not in ("float32", "float64"):
        raise ConfigError(f"model.dtype must be 'float32' or 'float64', got {model['dtype']!r}")
    if model["decoder"] not in ("factorized", "autoregressive"):
        raise ConfigError(f"model.decoder must be 'factorized' or 'autoregressive', got {model['decoder']!r}")

    for key in ("steps", "batch_size"):
        if train[key] < 1:
            raise ConfigError(f"training.{key} must be >= 1")
    if train["importance_samples"] < 1:
        raise ConfigError("training.importance_samples must be >= 1 (1 = plain ELBO)")
    if train["learning_rate"] <= 0 or not 0 <= train["final_lr_fraction"] <= 1 or train["kl_warmup"] < 0:
        raise ConfigError("training: need learning_rate > 0, 0 <= final_lr_fraction <= 1, kl_warmup >= 0")
    train["steps"] = -(-train["steps"] // CHUNK) * CHUNK

    if ev["fidelity_estimator"] not in ("prior", "importance"):
        raise ConfigError(f"evaluation.fidelity_estimator must be 'prior' or 'importance', got {ev['fidelity_estimator']!r}")
    if ev["fidelity_latent_samples"] is None:
        ev["fidelity_latent_samples"] = DEFAULT_FIDELITY_LATENT_SAMPLES[(ev["fidelity_estimator"], model["decoder"])]
    for key in ("samples", "fidelity_latent_samples", "chi_samples", "renyi_samples"):
        if ev[key] < 2:
            raise ConfigError(f"evaluation.{key} must be >= 2")
    if ev["fidelity"] and n > MAX_FIDELITY_SITES:
        raise ConfigError(f"evaluation.fidelity needs the full 4^N table: n_sites <= {MAX_FIDELITY_SITES}, got {n}")
    if ev["chi_temperature"] <= 0 or ev["chi_step"] <= 0:
        raise ConfigError("evaluation.chi_temperature and evaluation.chi_step must be > 0")
    blocks = ev["renyi_blocks"]
    if not all(isinstance(b, int) and not isinstance(b, bool) and 1 <= b < n for b in blocks):
        raise ConfigError(f"evaluation.renyi_blocks must be integers in 1..{n - 1}, got {blocks!r}")
    if any(b > 10 for b in blocks):
        raise ConfigError("evaluation.renyi_blocks above 10 sites are not supported (4^l histogram)")
    corr = ev["correlation_fields"]
    if corr is None:
        corr = [fields[i] for i in sorted({0, len(fields) // 2, len(fields) - 1})]
    corr = _float_list("evaluation.correlation_fields", corr)
    for h in corr:
        if not any(abs(h - f) < 1e-9 for f in fields):
            raise ConfigError(f"evaluation.correlation_fields: {h} is not one of system.fields")
    ev["correlation_fields"] = corr
    memory_estimate(cfg, check=True)
    return cfg


def memory_estimate(cfg: dict, check: bool = False) -> int:
    r"""Bytes the job holds at its peak, to an order of magnitude: the measurement data
    (:math:`F \cdot S \cdot N` uint8 outcomes, once more as a float32 one-hot copy of
    :math:`16N` bytes per sample), the largest evaluation batch (one-hot float32), the
    encoder/decoder parameters with gradients and Adam moments, and for DMRG the MPS with its
    environments (:math:`\approx 8 N \chi^2` complex numbers).
    With ``check``, a job above the machine's memory is refused (:class:`ConfigError`)."""
    from distnqs.memory import refuse_above_machine

    n, data, ev = cfg["system"]["n_sites"], cfg["data"], cfg["evaluation"]
    data_bytes = len(cfg["system"]["fields"]) * data["samples_per_field"] * n * (1 + 16)
    eval_bytes = max(ev["samples"], ev["chi_samples"], ev["renyi_samples"]) * n * 16
    mps_bytes = 8 * n * data["bond_dim"] ** 2 * 16 if data["method"] == "mps" else 0
    widths = [4 * n + 1, *cfg["model"]["hidden"], 2 * cfg["model"]["latent_dim"]]  # encoder; the decoder mirrors it
    n_params = 2 * sum(a * b for a, b in zip(widths, widths[1:]))
    model_bytes = 4 * 8 * n_params + 4 * 2 * cfg["training"]["batch_size"] * sum(widths)  # params, grads, Adam moments; activations
    need = data_bytes + eval_bytes + mps_bytes + model_bytes
    if check:
        refuse_above_machine(need, f"{n} sites, {len(cfg['system']['fields'])} fields x {data['samples_per_field']} samples, "
                                   f"{max(ev['samples'], ev['chi_samples'], ev['renyi_samples'])} evaluation samples"
                                   + (f", bond dimension {data['bond_dim']}" if mps_bytes else "") + f", {n_params} parameters")
    return need


def _float_list(name: str, values) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{name} must be a list of finite numbers, got {v!r}")
        out.append(float(v))
    return out


# ----------------------------------------------------------------------------- progress


class Progress:
    """One-line progress messages on stderr (``\\r``-updated on a terminal)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self._open = False

    def __call__(self, message: str, transient: bool = False) -> None:
        stamp = f"[tomography {time.perf_counter() - self.t0:7.1f}s] {message}"
        if self.tty and transient:
            self.stream.write("\r\033[K" + stamp)
            self._open = True
        else:
            if self._open:
                self.stream.write("\n")
                self._open = False
            self.stream.write(stamp + "\n")
        self.stream.flush()


# ----------------------------------------------------------------------------- evaluation


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _peak(fields: np.ndarray, chi: np.ndarray) -> float | None:
    """Field of the largest :math:`|\\chi|` with a parabola through the three grid points around it."""
    values = np.abs(np.asarray(chi, dtype=float))
    if values.size < 3 or not np.all(np.isfinite(values)):
        return None
    k = int(np.argmax(values))
    if k == 0 or k == values.size - 1:
        return float(fields[k])
    (x0, x1, x2), (y0, y1, y2) = fields[k - 1:k + 2], values[k - 1:k + 2]
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / denom
    return float(-b / (2 * a)) if a < 0 else float(x1)


def evaluate(cfg: dict, dataset, model, params, povm, progress) -> dict:
    """All measurements of the trained model against the exact values.

    Per field: observables from ``evaluation.samples`` model samples and from
    the training data (sample estimators of :mod:`.observables`); classical
    fidelity (model distribution by Monte Carlo over the prior or by importance
    sampling with the encoder, see :func:`.cvae.outcome_distribution`, from two independent
    halves of the latent draws; the difference between the fidelity of the pooled
    estimate and the mean fidelity of the halves estimates the downward bias caused by the Monte Carlo
    noise, which falls like 1/S); :math:`\\chi` (Gumbel-softmax autodiff,
    central differences of the relaxed and of the hard-sample estimator, and
    exact central differences on the field grid); Rényi-2 entropies of the
    requested left blocks (pair U-statistic) from model and data samples.
    """
    import jax

    from distnqs.generative.tomography import cvae, observables

    ev = cfg["evaluation"]
    fields = dataset.fields
    n = dataset.n_sites
    key = jax.random.key(ev["seed"])
    k_sample, k_fid, k_chi, k_renyi = jax.random.split(key, 4)
    exact = {k: np.asarray(v) for k, v in dataset.exact.items()}
    out: dict = {"fields": fields, "exact": {k: exact[k] for k in ("energy", *observables.OBSERVABLE_KEYS)}}

    vae_est, data_est = [], []
    for f, h in enumerate(fields):
        progress(f"evaluate observables {f + 1}/{fields.size} (h = {h:.3f})", transient=True)
        samples = cvae.sample(model, params, float(h), ev["samples"], jax.random.fold_in(k_sample, f))
        vae_est.append(observables.estimate_from_samples(samples, povm))
        data_est.append(observables.estimate_from_samples(dataset.outcomes[f], povm))
    stack = lambda rows: {k: np.asarray([r[k] for r in rows]) for k in rows[0]}  # noqa: E731
    out["vae"], out["data"] = stack(vae_est), stack(data_est)
    out["max_abs_error_vae"] = {k: float(np.max(np.abs(out["vae"][k] - exact[k]))) for k in observables.OBSERVABLE_KEYS}
    out["max_abs_error_data"] = {k: float(np.max(np.abs(out["data"][k] - exact[k]))) for k in observables.OBSERVABLE_KEYS}

    if ev["fidelity"]:
        from distnqs.generative.tomography.data import povm_distribution

        method, n_latent = ev["fidelity_estimator"], ev["fidelity_latent_samples"]
        half = max(1, n_latent // 2)
        bc_vae, bc_data, bias, norm = [], [], [], []
        for f, h in enumerate(fields):
            progress(f"fidelity {f + 1}/{fields.size} (h = {h:.3f})", transient=True)
            p_exact = povm_distribution(dataset.states[f], povm)
            halves = [cvae.outcome_distribution(model, params, float(h), k, half, method=method)
                      for k in jax.random.split(jax.random.fold_in(k_fid, f))]
            p_vae = 0.5 * (halves[0] + halves[1])
            bc_vae.append(observables.bhattacharyya(p_exact, p_vae))
            bias.append(bc_vae[-1] - np.mean([observables.bhattacharyya(p_exact, p) for p in halves]))
            norm.append(float(p_vae.sum()))
            bc_data.append(observables.bhattacharyya(p_exact, observables.empirical_distribution(dataset.outcomes[f])))
        description = {
            "prior": "Monte Carlo over z ~ N(0,1): p_vae(a) = mean_s p(a|z_s,h), S = latent_samples draws in total",
            "importance": "importance sampling with the encoder: p_vae(a) = mean_k p(a|z_k,h) N(z_k;0,1)/q(z_k|a,h), "
                          "z_k ~ q(z|a,h), K = latent_samples draws per outcome",
        }[method]
        out["fidelity"] = {"vae": np.asarray(bc_vae), "data": np.asarray(bc_data), "min_vae": float(min(bc_vae)),
                           "noise_bias": np.asarray(bias), "max_noise_bias": float(max(bias)), "normalization": np.asarray(norm),
                           "latent_samples": n_latent, "estimator": method, "method": description,
                           "noise_bias_definition": "B(pooled estimate) - mean B(two half-size estimates): estimated amount by "
                                                    "which MC noise lowers B (bias ~ 1/S)"}

    if ev["susceptibility"]:
        x_table, z_table = povm.estimator("X"), povm.estimator("Z")
        rows = []
        for f, h in enumerate(fields):
            progress(f"susceptibility {f + 1}/{fields.size} (h = {h:.3f})", transient=True)
            rows.append(cvae.susceptibility(model, params, float(h), jax.random.fold_in(k_chi, f), x_table, z_table,
                                            ev["chi_samples"], ev["chi_temperature"], ev["chi_step"]))
        chi = stack(rows)
        sus = {"temperature": ev["chi_temperature"], "step": ev["chi_step"], "samples": ev["chi_samples"]}
        for i, comp in enumerate(("x", "z")):
            for name in ("gumbel", "fd_relaxed", "fd_hard"):
                sus[f"{name}_{comp}"] = chi[name][:, i]
            if fields.size >= 3:
                sus[f"exact_{comp}"] = observables.susceptibility_fd(fields, exact[f"mu_{comp}"])
        out["susceptibility"] = sus
        if fields.size >= 3:
            out["transition"] = {
                "definition": "field of max |d mu_z/dh| (parabolic interpolation on the field grid)",
                "exact": _peak(fields, sus["exact_z"]),
                "vae_gumbel": _peak(fields, sus["gumbel_z"]),
                "vae_fd_hard": _peak(fields, sus["fd_hard_z"]),
            }

    blocks = ev["renyi_blocks"]
    if blocks:
        table = {name: np.full((fields.size, len(blocks)), np.nan) for name in ("vae", "vae_err", "data", "data_err")}
        for f, h in enumerate(fields):
            progress(f"Renyi-2 {f + 1}/{fields.size} (h = {h:.3f})", transient=True)
            samples = cvae.sample(model, params, float(h), ev["renyi_samples"], jax.random.fold_in(k_renyi, f))
            for j, block in enumerate(blocks):
                for name, source in (("vae", samples), ("data", dataset.outcomes[f])):
                    r = observables.renyi2_from_samples(source, povm, block)
                    table[name][f, j], table[f"{name}_err"][f, j] = r["S2"], r["S2_err"]
        out["renyi2"] = {"blocks": blocks, "exact": exact["renyi2"][:, [b - 1 for b in blocks]], **table,
                         "vae_samples": ev["renyi_samples"], "data_samples": int(dataset.outcomes.shape[1])}
    progress("evaluation done")
    return out


# ----------------------------------------------------------------------------- plots


def write_plots(outdir: Path, results: dict, cfg: dict) -> list[str]:
    """PNG figures of the evaluation; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fields = np.asarray(results["fields"])
    n = cfg["system"]["n_sites"]
    exact, vae = results["exact"], results["vae"]
    written = []

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    sites = np.arange(n)
    for h in cfg["evaluation"]["correlation_fields"]:
        f = int(np.argmin(np.abs(fields - h)))
        for ax, key, label in zip(axes, ("szsz", "sxsx", "sx"),
                                  (r"$\langle\sigma^z_1\sigma^z_n\rangle$", r"$\langle\sigma^x_1\sigma^x_n\rangle$", r"$\langle\sigma^x_n\rangle$")):
            line, = ax.plot(sites + 1, exact[key][f], "-", label=f"exact h={h:g}")
            ax.errorbar(sites + 1, vae[key][f], yerr=vae[f"{key}_err"][f], fmt="o", ms=3, color=line.get_color(), label=f"VAE h={h:g}")
            ax.set_xlabel("n")
            ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"TFIM chain N={n}: correlations, exact (lines) vs conditional VAE samples (points)")
    fig.tight_layout()
    fig.savefig(outdir / "correlations.png", dpi=110)
    plt.close(fig)
    written.append("correlations.png")

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for key, label in (("mu_x", r"$\mu_x=\langle\sum\sigma^x\rangle/N$"), ("mu_z", r"$\mu_z=\langle(\sum\sigma^z)^2\rangle^{1/2}/N$")):
        line, = ax.plot(fields, exact[key], "-", label=f"{label} exact")
        ax.errorbar(fields, vae[key], yerr=vae[f"{key}_err"], fmt="o", ms=4, color=line.get_color(), label=f"{label} VAE")
    ax.set_xlabel("h")
    ax.set_title(f"magnetizations, N={n}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(outdir / "magnetizations.png", dpi=110)
    plt.close(fig)
    written.append("magnetizations.png")

    if "fidelity" in results:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        ax.plot(fields, results["fidelity"]["vae"], "o-", label="VAE vs exact")
        ax.plot(fields, results["fidelity"]["data"], "s--", label="training data histogram vs exact")
        ax.set_xlabel("h")
        ax.set_ylabel(r"$\sum_a\sqrt{p(a)q(a)}$")
        ax.set_title(f"classical fidelity of the POVM distribution, N={n}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(outdir / "fidelity.png", dpi=110)
        plt.close(fig)
        written.append("fidelity.png")

    if "susceptibility" in results:
        sus = results["susceptibility"]
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for ax, comp in zip(axes, ("x", "z")):
            if f"exact_{comp}" in sus:
                ax.plot(fields, sus[f"exact_{comp}"], "k-", label="exact (central differences on grid)")
            ax.plot(fields, sus[f"gumbel_{comp}"], "o-", label=f"VAE Gumbel-softmax autodiff (tau={sus['temperature']:g})")
            ax.plot(fields, sus[f"fd_hard_{comp}"], "s--", label=f"VAE central differences (delta={sus['step']:g})")
            ax.set_xlabel("h")
            ax.set_ylabel(rf"$\chi_{comp} = d\mu_{comp}/dh$")
            ax.legend(fontsize=7)
        fig.suptitle(f"susceptibilities, N={n}")
        fig.tight_layout()
        fig.savefig(outdir / "susceptibility.png", dpi=110)
        plt.close(fig)
        written.append("susceptibility.png")

    if "renyi2" in results:
        ren = results["renyi2"]
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for j, block in enumerate(ren["blocks"]):
            line, = ax.plot(fields, np.asarray(ren["exact"])[:, j], "-", label=f"l={block} exact")
            ax.errorbar(fields, np.asarray(ren["vae"])[:, j], yerr=np.asarray(ren["vae_err"])[:, j], fmt="o", ms=4,
                        color=line.get_color(), label=f"l={block} VAE")
            ax.errorbar(fields, np.asarray(ren["data"])[:, j], yerr=np.asarray(ren["data_err"])[:, j], fmt="x", ms=4,
                        color=line.get_color(), alpha=0.5, label=f"l={block} data")
        ax.set_xlabel("h")
        ax.set_ylabel(r"$S_2 = -\ln\mathrm{Tr}\rho_A^2$ (left block of l sites)")
        ax.set_title(f"Renyi-2 entropy, N={n}")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(outdir / "renyi2.png", dpi=110)
        plt.close(fig)
        written.append("renyi2.png")
    return written


# ----------------------------------------------------------------------------- main


def run(cfg: dict, outdir: Path, progress) -> dict:
    """Data -> training -> evaluation -> files in ``outdir``; returns the summary dict."""
    import flax.serialization

    from distnqs.generative.tomography import cvae, data
    from distnqs.generative.tomography.povm import tetrahedral_povm

    povm = tetrahedral_povm(cfg["data"]["povm_file"] or None)
    sysc, dc, mc, tc = cfg["system"], cfg["data"], cfg["model"], cfg["training"]
    timing = {}

    t0 = time.perf_counter()
    progress(f"generating data: N = {sysc['n_sites']}, {len(sysc['fields'])} fields, {dc['samples_per_field']} samples each ({dc['method']})")
    dataset = data.generate_dataset(sysc["n_sites"], np.asarray(sysc["fields"]), dc["samples_per_field"], povm, dc["seed"],
                                    dc["method"], dc["bond_dim"], progress=progress)
    data.save_dataset(outdir / "data.h5", dataset)
    timing["data_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = cvae.make_model(sysc["n_sites"], mc["latent_dim"], mc["hidden"], mc["dtype"], mc["decoder"])
    train_cfg = cvae.TrainConfig(steps=tc["steps"], batch_size=tc["batch_size"], learning_rate=tc["learning_rate"],
                                 final_lr_fraction=tc["final_lr_fraction"], kl_warmup=tc["kl_warmup"], seed=tc["seed"], chunk=CHUNK,
                                 importance_samples=tc["importance_samples"])

    def on_chunk(step, entry):
        rate = step / max(entry["seconds"], 1e-9)
        eta = (train_cfg.steps - step) / max(rate, 1e-9)
        bound = "-ELBO" if train_cfg.importance_samples == 1 else f"-IWAE_{train_cfg.importance_samples}"
        progress(f"train step {step}/{train_cfg.steps}: {bound} {entry['loss']:.4f} (rec {-entry['rec']:.4f}, KL {entry['kl']:.4f}, "
                 f"beta {entry['beta']:.2f}), {rate:.0f} steps/s, ETA {eta:.0f} s", transient=step < train_cfg.steps)

    params, history = cvae.train(model, dataset.outcomes, dataset.fields, train_cfg, on_chunk)
    (outdir / "model.msgpack").write_bytes(flax.serialization.to_bytes(params))
    timing["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    results = evaluate(cfg, dataset, model, params, povm, progress)
    timing["evaluate_s"] = time.perf_counter() - t0

    summary = {
        "command": "distnqs tomography",
        "hamiltonian": "H = -sum_i sz_i sz_{i+1} - h sum_i sx_i (open chain, Pauli matrices), spin-flip-even ground state",
        "povm": "tetrahedral M_a = (1 + s_a.sigma)/4, vectors from literature.json",
        "definitions": {
            "mu_x": "<sum_i sx_i>/N",
            "mu_z": "<(sum_i sz_i)^2>^(1/2)/N",
            "szsz": "<sz_1 sz_n>, n = 1..N (site 1 = left end)",
            "chi": "d mu/dh",
            "renyi2": "-ln Tr rho_A^2, A = left block of l sites",
        },
        "config": cfg,
        "n_sites": sysc["n_sites"],
        "method": dc["method"],
        "timing": timing,
        "training": {"final": history[-1], "history": history},
        **results,
    }
    summary["plots"] = write_plots(outdir, summary, cfg)
    atomic_write_text(outdir / "summary.json", json.dumps(_jsonable(summary), indent=1))
    return summary


def main(argv: list[str]) -> int:
    """Entry point of ``distnqs tomography``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="distnqs tomography",
                                     description="Conditional-VAE reconstruction of TFIM chain ground states from IC-POVM data.")
    parser.add_argument("config", help="TOML config (see docs/tomography.md)")
    parser.add_argument("--outdir", required=True, help="output directory")
    parser.add_argument("--force", action="store_true", help="overwrite the results of an existing output directory")
    args = parser.parse_args(argv)

    cfg = load_config(args.config)
    outdir = check_outdir(args.outdir, args.force)
    from distnqs.generative.tomography.povm import tetrahedral_povm

    tetrahedral_povm(cfg["data"]["povm_file"] or None)  # fail early on a missing reference file
    outdir.mkdir(parents=True, exist_ok=True)

    progress = Progress()
    t0 = time.perf_counter()
    summary = run(cfg, outdir, progress)
    progress(f"done in {time.perf_counter() - t0:.1f} s; results in {outdir}/summary.json")
    line = f"N={summary['n_sites']}: max |mu_x err| {summary['max_abs_error_vae']['mu_x']:.4f}, max |mu_z err| {summary['max_abs_error_vae']['mu_z']:.4f}"
    if "fidelity" in summary:
        line += f", min fidelity {summary['fidelity']['min_vae']:.4f}"
    print(line)
    return 0
