"""Autoregressive sampling and VMC steps: distnqs NAQS against NetKet's
``FastARNNConv2D`` + ``ARDirectSampler`` (issues 4 and 5, cases 3 and 5).

Two measurements, each run in one process with the two codes alternating
(``--repeats`` rounds), so drifts of a shared machine hit both:

- ``sample``: seconds to draw ``--n-samples`` exact configurations on L x L
  (``--sizes``), distnqs cached (rolling per-layer caches, about one forward
  pass per configuration) and uncached (N forward passes), and NetKet's cached
  ``FastARNNConv2D`` sampled by ``ARDirectSampler``. Same depth (masked
  layers), width (channels) and kernel size. The two networks differ in
  layout: NetKet stacks masked convolutions in one stack (its last layer
  outputs the conditionals), distnqs uses the vertical/horizontal two-stack
  layers of the gated PixelCNN (no blind spot) with a 1x1 output layer, so
  at equal depth and width distnqs has somewhat more parameters (both
  counts are recorded).
- ``step``: one VMC step on the 10x10 open TFIM at G = 3 (direct sampling of
  ``--n-samples``, local energies, gradient, Adam), median seconds per step
  after compilation, and the energy after ``--steps`` steps of each code;
  distnqs with float64 layers and with ``dtype = "float32"`` layers
  (``--dtypes``; float64 conditionals and reductions either way), NetKet with
  ``param_dtype`` float64 and float32 (``--netket-dtypes``; jax x64 enabled
  either way), so float32 is compared with float32.
- ``large``: the same step on 21x21 with a network of >= 100k parameters in
  both codes (case (5) of issue 5; few samples, since NetKet's local energies
  cost 442 forward passes of the whole network per sample).

- ``same``: case (3) with *one* network: distnqs' NAQS wrapped as a NetKet
  ``AbstractARNN`` (NetKet's driver, ``ARDirectSampler`` and forward-pass
  local energies) against distnqs, both from the same initial parameters, so
  the energies after the steps must agree within error bars. NetKet gets a
  cached ``conditional`` for the wrapped network (``--netket-conditional
  cached``, as its own ``FastARNN*`` models have; checked against the full
  pass) and, with ``both``, also ``AbstractARNN``'s default uncached one.

distnqs computes the local energies from the cached layers of each sample
(only the cone below a flipped site is recomputed,
:mod:`distnqs.models.naqs_fast`); NetKet runs the network on every connected
configuration.

Both networks have real parameters and positive amplitudes (distnqs
``phase = false``, NetKet's float64 ARNN). Results:
``benchmarks/results/naqs_sampling.json``, ``naqs_step.json`` and ``naqs_step_21x21.json``.

    .venv/bin/python benchmarks/bench_naqs.py --what sample --sizes 10 21
    .venv/bin/python benchmarks/bench_naqs.py --what step --steps 5 --repeats 3
    .venv/bin/python benchmarks/bench_naqs.py --what large --large-steps 5 --repeats 3
    .venv/bin/python benchmarks/bench_naqs.py --what same --steps 5 --repeats 3 --netket-conditional cached
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import distnqs  # noqa: F401  (x64 before jax)
import flax.linen as nn
import jax
import jax.numpy as jnp
import netket as nk
import numpy as np

from distnqs import config
from distnqs.models.naqs import NAQS
from distnqs.problem import build_problem
from timing import time_distnqs_steps, time_netket_driver

RESULTS = Path(__file__).resolve().parent / "results"


def _n_params(tree) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))


def _best_of(fn, n: int) -> float:
    """Median wall seconds of ``n`` calls of ``fn`` (which blocks until its result is ready)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_distnqs_sampling(L, depth, features, kernel, n_samples, cached, calls):
    module = NAQS(Lx=L, Ly=L, depth=depth, features=features, kernel_size=kernel, phase=False, output_scale=1.0)
    params = module.init(jax.random.PRNGKey(0), jnp.ones((1, L * L)))
    method = NAQS.sample_cached if cached else NAQS.sample_uncached
    draw = jax.jit(lambda p, k: module.apply(p, k, n_samples, method=method))
    t0 = time.perf_counter()
    jax.block_until_ready(draw(params, jax.random.PRNGKey(1)))
    compile_s = time.perf_counter() - t0
    keys = iter(jax.random.split(jax.random.PRNGKey(2), calls))
    seconds = _best_of(lambda: jax.block_until_ready(draw(params, next(keys))), calls)
    return {"seconds": seconds, "first_call_s": compile_s, "n_parameters": _n_params(params)}


def time_netket_sampling(L, depth, features, kernel, n_samples, calls):
    hi = nk.hilbert.Spin(0.5, L * L)
    model = nk.models.FastARNNConv2D(hilbert=hi, layers=depth, features=features, kernel_size=(kernel, kernel))
    vs = nk.vqs.MCState(nk.sampler.ARDirectSampler(hi), model, n_samples=n_samples, seed=0, sampler_seed=1)
    t0 = time.perf_counter()
    jax.block_until_ready(vs.sample())
    compile_s = time.perf_counter() - t0
    seconds = _best_of(lambda: jax.block_until_ready(vs.sample()), calls)
    return {"seconds": seconds, "first_call_s": compile_s, "n_parameters": int(vs.n_parameters)}


def bench_sampling(args):
    rows = []
    for L in args.sizes:
        runs = {"distnqs_cached": [], "distnqs_uncached": [], "netket_fast_arnn": []}
        for r in range(args.repeats):
            runs["netket_fast_arnn"].append(time_netket_sampling(L, args.depth, args.features, args.kernel, args.n_samples, args.calls))
            runs["distnqs_cached"].append(time_distnqs_sampling(L, args.depth, args.features, args.kernel, args.n_samples, True, args.calls))
            if r == 0 and L * L <= args.uncached_max_sites:  # N passes: slow, once is enough for the ratio
                runs["distnqs_uncached"].append(time_distnqs_sampling(L, args.depth, args.features, args.kernel, args.n_samples, False, 1))
            print(f"L={L} repeat {r}: " + ", ".join(f"{k} {v[-1]['seconds']:.3f} s" for k, v in runs.items() if v), flush=True)
        med = {k: float(np.median([x["seconds"] for x in v])) for k, v in runs.items() if v}
        row = {
            "L": L,
            "runs": runs,
            "median_seconds": med,
            "netket_over_distnqs_cached": med["netket_fast_arnn"] / med["distnqs_cached"],
            "ratio_per_repeat": [a["seconds"] / b["seconds"] for a, b in zip(runs["netket_fast_arnn"], runs["distnqs_cached"])],
        }
        if "distnqs_uncached" in med:
            row["uncached_over_cached"] = med["distnqs_uncached"] / med["distnqs_cached"]
        rows.append(row)
    return {
        "what": f"seconds to draw {args.n_samples} exact samples (one call, after compilation)",
        "architecture": {"depth": args.depth, "features": args.features, "kernel_size": args.kernel},
        "results": rows,
        "command": f"python benchmarks/bench_naqs.py --what sample --sizes {' '.join(map(str, args.sizes))} "
        f"--depth {args.depth} --features {args.features} --kernel {args.kernel} --repeats {args.repeats} --calls {args.calls}",
    }


def _step_problem(args, large: bool):
    """(L, depth, features, n_samples, steps) of the 10x10 case (3) or the 21x21 case (5)."""
    if large:
        return 21, args.large_depth, args.large_features, args.large_samples, args.large_steps
    return 10, args.depth, args.features, args.n_samples, args.steps


def run_distnqs_steps(args, seed, dtype="float64", large=False):
    L, depth, features, n_samples, steps = _step_problem(args, large)
    cfg = config.resolve({
        "seed": seed,
        "n_steps": 10**6,
        "lattice": {"Lx": L, "Ly": L, "pbc": False},
        "hamiltonian": {"model": "tfim", "G": 3.0},
        "ansatz": {"model": "naqs", "depth": depth, "features": features, "kernel_size": args.kernel, "phase": False, "activation": "selu", "dtype": dtype},
        "sampler": {"kind": "direct", "n_samples": n_samples},
        "optimizer": {"kind": "adam", "learning_rate": args.lr, "sr": False},
        "observables": {"magnetization": False},
        "run": {"reference": False},
    })
    return time_distnqs_steps(build_problem(cfg), steps)


def run_netket_steps(args, seed, large=False, dtype="float64"):
    """NetKet's ``FastARNNConv2D``; ``dtype = "float32"``: ``param_dtype=jnp.float32`` (x64 stays enabled)."""
    L, depth, features, n_samples, steps = _step_problem(args, large)
    hi = nk.hilbert.Spin(0.5, L * L)
    H = nk.operator.IsingJax(hi, nk.graph.Grid([L, L], pbc=False), h=3.0, J=-1.0)
    model = nk.models.FastARNNConv2D(hilbert=hi, layers=depth, features=features, kernel_size=(args.kernel, args.kernel),
                                     param_dtype=jnp.float32 if dtype == "float32" else jnp.float64)
    vs = nk.vqs.MCState(nk.sampler.ARDirectSampler(hi), model, n_samples=n_samples, seed=seed, sampler_seed=seed + 1)
    driver = nk.driver.VMC(H, nk.optimizer.Adam(args.lr), variational_state=vs)
    return time_netket_driver(driver, vs, steps)


def _naqs_for_netket(cached: bool = True):
    """NetKet ``AbstractARNN`` around distnqs' NAQS module: NetKet's driver, sampler and local
    energies (a forward pass per connected configuration) run exactly distnqs' network.

    ``cached = False``: ``AbstractARNN``'s default ``conditional`` (the whole network for every
    site, N forward passes per sample). ``cached = True``: a cached ``conditional`` in NetKet's
    ``"cache"`` collection (as NetKet's own ``FastARNN*`` models do), the same recursion as
    distnqs' ``NAQS.sample_cached``: rolling buffers of each vertical layer's last rows and each
    horizontal layer's last pixels, so ``ARDirectSampler`` costs about one forward pass per sample.
    """
    from distnqs.models.naqs import _conv_valid, log_conditionals_from_outputs

    class NAQSInNetKet(nk.models.AbstractARNN):
        net: Any = None  # a distnqs NAQS module
        machine_pow: int = 2

        def _order(self):
            # NetKet's local index j is the state hilbert.local_states[j]; distnqs' index is (t + 1) / 2
            return np.asarray([(int(round(v)) + 1) // 2 for v in np.asarray(self.hilbert.local_states)])

        def conditionals_log_psi(self, inputs):
            return self.net.conditionals(inputs)[..., self._order()]

    if not cached:
        return NAQSInNetKet

    class CachedNAQSInNetKet(NAQSInNetKet):
        @nn.compact
        def conditional(self, inputs, index):
            """|psi_index(t | s_<index)|^2 ``(batch, 2)``; reads only ``inputs[:, :index]`` and the cache."""
            net = self.net
            assert not net.one_d, "2D lattices only"
            w = net.weights
            act = net._act
            Lx, Ly, N, F, D = net.Lx, net.Ly, net.n_sites, net.features, net.depth
            R = net.kernel_size // 2
            P = R + 1
            inputs = jnp.asarray(inputs)
            n = inputs.shape[0]
            dt = w["out_kernel"].dtype
            v_buf = self.variable("cache", "v_buf", jnp.zeros, (D - 1, n, R + 1, Lx + 2 * R, F), dt)
            v_rows = self.variable("cache", "v_rows", jnp.zeros, (D, n, Lx, F), dt)
            h_buf = self.variable("cache", "h_buf", jnp.zeros, (D - 1, n, R + 1, F), dt)
            index = jnp.asarray(index)
            y, x = index // Lx, index % Lx
            # s_pad[:, R + 1 + y, P + x] = s(y, x), zero rows on top, zero columns either side (as in _cached_pass)
            s_pad = jnp.pad(inputs.astype(dt).reshape(n, Ly, Lx), ((0, 0), (R + 1, 0), (P, R)))

            def new_row(vb):
                vb = jnp.where(y == 0, jnp.zeros_like(vb), vb)  # row 0: nothing above (init may have run index 0)
                s_rows = jax.lax.dynamic_slice(s_pad, (0, y, 1), (n, R + 1, Lx + 2 * R))[..., None]
                v0 = act(_conv_valid(s_rows, w["v_in_kernel"])[:, 0] + w["v_in_bias"])

                def vlayer(v_prev, p):
                    buf, vk, vbias = p
                    new = jnp.pad(v_prev, ((0, 0), (R, R), (0, 0)))[:, None]
                    buf = jnp.concatenate([buf[:, 1:], new], axis=1)
                    v = v_prev + act(_conv_valid(buf, vk)[:, 0] + vbias)
                    return v, (buf, v)

                _, (vb, v_rest) = jax.lax.scan(vlayer, v0, (vb, w["v_kernel"], w["v_bias"]))
                return vb, jnp.concatenate([v0[None], v_rest], axis=0)

            vb, vr = jax.lax.cond(x == 0, new_row, lambda vb: (vb, v_rows.value), v_buf.value)
            hb = jnp.where(x == 0, jnp.zeros_like(h_buf.value), h_buf.value)
            s_left = jax.lax.dynamic_slice(s_pad, (0, R + 1 + y, x), (n, 1, R + 1))[:, 0]
            v_here = jax.lax.dynamic_index_in_dim(vr, x, axis=2, keepdims=False)  # (D, n, F)
            h = act(s_left @ w["h_in_kernel"][0, :, 0, :] + w["h_in_bias"] + v_here[0] @ w["link_in"])

            def layer(h_prev, p):
                buf, hk, hbias, link, v = p
                buf = jnp.concatenate([buf[:, 1:], h_prev[:, None]], axis=1)
                return h_prev + act(jnp.einsum("nbf,bfg->ng", buf, hk) + hbias + v @ link), buf

            h, hb = jax.lax.scan(layer, h, (hb, w["h_kernel"][:, 0], w["h_bias"], w["link"], v_here[1:]))
            n_up = jnp.sum((inputs > 0) & (jnp.arange(N) < index), axis=-1)
            lc = log_conditionals_from_outputs(net._head(h), n_up, N, index, net._marshall_mask()[index], net.zero_magnetization)
            v_buf.value, v_rows.value, h_buf.value = vb, vr, hb
            return jnp.exp(self.machine_pow * jnp.real(lc))[:, self._order()]

    return CachedNAQSInNetKet


def _check_cached_conditional(model, variables, s, N):
    """The cached conditional, site by site on ``s`` (one jitted scan, as ``ARDirectSampler`` runs it),
    equals the full-pass conditionals to 1e-10."""

    @jax.jit
    def cached(variables, s):
        cache = model.init(jax.random.PRNGKey(0), s, 0, method=model.conditional)["cache"]

        def site(cache, i):
            p, mut = model.apply({**variables, "cache": cache}, s, i, method=model.conditional, mutable=["cache"])
            return mut["cache"], p

        return jnp.moveaxis(jax.lax.scan(site, cache, jnp.arange(N))[1], 0, 1)

    full = np.asarray(model.apply(variables, s, method=model.conditionals))
    err = float(np.abs(np.asarray(cached(variables, s)) - full).max())
    assert err < 1e-10, err
    return err


def bench_same_network(args):
    """Case (3) with one network: distnqs' NAQS, identical initial parameters, in both codes.

    NetKet gets the wrapped network with a cached conditional (``netket_cached``, like its
    ``FastARNN*`` models) and, with ``--netket-conditional both``, also with ``AbstractARNN``'s
    default uncached one (``netket_uncached``)."""
    kinds = ["cached", "uncached"] if args.netket_conditional == "both" else [args.netket_conditional]
    runs = {**{f"netket_{k}": [] for k in kinds}, "distnqs": []}
    for r in range(args.repeats):
        cfg = config.resolve({
            "seed": r, "n_steps": 10**6,
            "lattice": {"Lx": 10, "Ly": 10, "pbc": False},
            "hamiltonian": {"model": "tfim", "G": 3.0},
            "ansatz": {"model": "naqs", "depth": args.depth, "features": args.features, "kernel_size": args.kernel, "phase": False, "activation": "selu"},
            "sampler": {"kind": "direct", "n_samples": args.n_samples},
            "optimizer": {"kind": "adam", "learning_rate": args.lr, "sr": False},
            "observables": {"magnetization": False},
            "run": {"reference": False},
        })
        problem = build_problem(cfg)
        params0 = problem.init_state()[0]
        hi = nk.hilbert.Spin(0.5, 100)
        H = nk.operator.IsingJax(hi, nk.graph.Grid([10, 10], pbc=False), h=3.0, J=-1.0)
        for k in kinds:
            model = _naqs_for_netket(cached=(k == "cached"))(hilbert=hi, net=problem.ansatz.module)
            vs = nk.vqs.MCState(nk.sampler.ARDirectSampler(hi), model, n_samples=args.n_samples, seed=r, sampler_seed=r + 1)
            vs.parameters = {"net": params0}
            s = jnp.asarray(np.random.default_rng(r).choice([-1.0, 1.0], (4, 100)))
            assert np.allclose(np.asarray(vs.log_value(s)), np.asarray(problem.ansatz.log_psi(params0, s)), atol=1e-12)
            if k == "cached":
                _check_cached_conditional(model, {"params": vs.parameters}, s, 100)
            driver = nk.driver.VMC(H, nk.optimizer.Adam(args.lr), variational_state=vs)
            runs[f"netket_{k}"].append(time_netket_driver(driver, vs, args.steps))
            if k == kinds[0]:  # alternate: NetKet cached, distnqs, NetKet uncached
                runs["distnqs"].append(time_distnqs_steps(problem, args.steps))
        for code in runs:
            x = runs[code][-1]
            print(f"same network {code} repeat {r}: {x['s_per_step']:.3f} s/step, E = {x['energy']:.3f} ± {x['energy_error']:.3f}", flush=True)
    med = {k: float(np.median([x["s_per_step"] for x in v])) for k, v in runs.items()}
    spread = {k: [float(min(x["s_per_step"] for x in v)), float(max(x["s_per_step"] for x in v))] for k, v in runs.items()}
    nets = [c for c in runs if c != "distnqs"]
    per_repeat = {c: [a["s_per_step"] / b["s_per_step"] for a, b in zip(runs[c], runs["distnqs"])] for c in nets}
    sigmas = {c: [abs(a["energy"] - b["energy"]) / np.hypot(a["energy_error"], b["energy_error"]) for a, b in zip(runs[c], runs["distnqs"])] for c in nets}
    return {
        "what": f"one VMC step of distnqs' NAQS in NetKet (AbstractARNN wrapper, ARDirectSampler, forward-pass local energies) and in distnqs, "
        f"10x10 open TFIM G = 3, {args.n_samples} samples, Adam lr {args.lr}, the same initial parameters",
        "netket_conditional": {"netket_cached": "cached conditional (rolling per-layer buffers in NetKet's 'cache' collection, "
                               "checked against the full pass to 1e-10)", "netket_uncached": "AbstractARNN default: the whole network per site"},
        "architecture": {"depth": args.depth, "features": args.features, "kernel_size": args.kernel, "activation": "selu"},
        "runs": runs,
        "median_s_per_step": med,
        "min_max_s_per_step": spread,
        **{f"{c}_over_distnqs": med[c] / med["distnqs"] for c in nets},
        "ratio_per_repeat": per_repeat,
        "ratio_min_max": {c: [float(min(v)), float(max(v))] for c, v in per_repeat.items()},
        "energy_difference_in_error_bars": sigmas,
        "command": f"python benchmarks/bench_naqs.py --what same --steps {args.steps} --repeats {args.repeats} "
        f"--depth {args.depth} --features {args.features} --kernel {args.kernel} --netket-conditional {args.netket_conditional}",
    }


def bench_step(args, large=False):
    L, depth, features, n_samples, steps = _step_problem(args, large)
    # alternating: NetKet float64, distnqs float64, NetKet float32, distnqs float32 (per --netket-dtypes / --dtypes)
    codes = []
    for d in ["float64", "float32"]:
        if d in args.netket_dtypes:
            codes.append(("netket" if d == "float64" else f"netket_{d}", lambda a, seed, d=d: run_netket_steps(a, seed, large, d)))
        if d in args.dtypes:
            codes.append(("distnqs" if d == "float64" else f"distnqs_{d}", lambda a, seed, d=d: run_distnqs_steps(a, seed, d, large)))
    runs = {code: [] for code, _ in codes}
    flag = "--what large" if large else "--what step"
    sizes = (f"--large-depth {depth} --large-features {features} --large-samples {n_samples} --large-steps {steps}" if large
             else f"--depth {depth} --features {features} --n-samples {n_samples} --steps {steps}")
    out = None
    for r in range(args.repeats):
        for code, fn in codes:
            runs[code].append(fn(args, seed=r))
            x = runs[code][-1]
            print(f"step {code} repeat {r}: {x['s_per_step']:.3f} s/step, E = {x['energy']:.3f} ± {x['energy_error']:.3f}", flush=True)
        med = {k: float(np.median([x["s_per_step"] for x in v])) for k, v in runs.items()}
        spread = {k: [float(min(x["s_per_step"] for x in v)), float(max(x["s_per_step"] for x in v))] for k, v in runs.items()}
        # ratios of like precision: NetKet float64 / distnqs float64 layers, NetKet float32 / distnqs float32 layers,
        # and (as before) NetKet float64 / distnqs float32
        pairs = [(n, d) for n, d in [("netket", "distnqs"), ("netket_float32", "distnqs_float32"), ("netket", "distnqs_float32")] if n in runs and d in runs]
        ratios = {f"{n}_over_{d}": med[n] / med[d] for n, d in pairs}
        per_repeat = {f"{n}_over_{d}": [a["s_per_step"] / b["s_per_step"] for a, b in zip(runs[n], runs[d])] for n, d in pairs}
        out = {
            "what": f"one VMC step, {L}x{L} open TFIM G = 3, {n_samples} direct samples, Adam lr {args.lr}",
            "architecture": {"depth": depth, "features": features, "kernel_size": args.kernel, "activation": "selu (NetKet's default)"},
            "local_energies": "distnqs: cones of the cached layers (distnqs/models/naqs_fast.py); NetKet: a forward pass per connected configuration",
            "repeats_done": r + 1,
            "machine": f"{platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind}, {len(os.sched_getaffinity(0))} cores",
            "conditions": f"codes alternated within one process; 1-minute load average {os.getloadavg()[0]:.2f} after this repeat "
            "(about 1: this benchmark alone on the machine; higher: other jobs shared the cores)",
            "versions": {"jax": jax.__version__, "netket": nk.__version__, "distnqs": distnqs.__version__},
            "runs": runs,
            "median_s_per_step": med,
            "min_max_s_per_step": spread,
            **ratios,
            "ratio_per_repeat": per_repeat,
            "ratio_min_max": {k: [float(min(v)), float(max(v))] for k, v in per_repeat.items()},
            "precision": "float64: all float64. float32: distnqs dtype = float32 layers (conditionals, log psi, local energies, "
            "reductions float64); NetKet FastARNNConv2D(param_dtype=float32), jax x64 enabled",
            "command": f"python benchmarks/bench_naqs.py {flag} {sizes} --repeats {args.repeats} --kernel {args.kernel} "
            f"--dtypes {' '.join(args.dtypes)} --netket-dtypes {' '.join(args.netket_dtypes)}",
        }
        if args.partial_to:  # a result after every repeat, so that an interrupted run leaves what it measured
            Path(args.partial_to).write_text(json.dumps(out, indent=2) + "\n")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--what", default="all", choices=["sample", "step", "large", "same", "all"])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 21])
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--n-samples", type=int, default=1024)
    p.add_argument("--calls", type=int, default=3, help="timed sampling calls per run")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--large-depth", type=int, default=5, help="case (5): 21x21, >= 100k parameters in both codes")
    p.add_argument("--large-features", type=int, default=64)
    p.add_argument("--large-samples", type=int, default=32, help="few samples: a NetKet step costs 442 forward passes each")
    p.add_argument("--large-steps", type=int, default=5)
    p.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"],
                   help="arithmetic of the distnqs layers (NAQS dtype)")
    p.add_argument("--netket-dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"],
                   help="param_dtype of NetKet's FastARNNConv2D (x64 enabled either way)")
    p.add_argument("--netket-conditional", default="cached", choices=["cached", "uncached", "both"],
                   help="--what same: NetKet's conditional for the wrapped network")
    p.add_argument("--partial-to", default=None, help="step/large: also write the result so far to this file after every repeat")
    p.add_argument("--uncached-max-sites", type=int, default=441)
    args = p.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "machine": f"{platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind}, {len(os.sched_getaffinity(0))} cores",
        "versions": {"jax": jax.__version__, "netket": nk.__version__, "distnqs": distnqs.__version__},
    }
    todo = [("sample", bench_sampling, "naqs_sampling"), ("step", bench_step, "naqs_step"),
            ("large", lambda a: bench_step(a, large=True), "naqs_step_21x21"), ("same", bench_same_network, "naqs_step_same_network")]
    for what, fn, name in todo:
        if args.what in (what, "all"):
            out = {**fn(args), **meta, "peak_rss_mb_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
            (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
            print(json.dumps({k: v for k, v in out.items() if k not in ("runs", "results")}, indent=1))
            for row in out.get("results", []):
                print(f"L={row['L']}: median s {row['median_seconds']}, NetKet/distnqs(cached) {row['netket_over_distnqs_cached']:.2f}")


if __name__ == "__main__":
    main()
