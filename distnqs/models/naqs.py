r"""Neural autoregressive quantum state (NAQS) of Sharir, Levine, Wies, Carleo
and Shashua, PRL 124, 020503 (2020), with exact site-by-site sampling.

Wave function (eq. (3) of the paper): with sites in raster order
:math:`i = y L_x + x` (x fastest, spins :math:`s_i = \pm 1`),

.. math::  \psi(s) = \prod_{i=0}^{N-1} \psi_i(s_i \mid s_{<i}), \qquad
           \log\psi(s) = \sum_i \log\psi_i(s_i \mid s_{<i}),

and every conditional is a normalized complex vector over the two local
states :math:`t \in \{-1, +1\}` (index :math:`k = (t+1)/2`): the network
gives two real numbers per state, a log-magnitude :math:`a_{i,t}` and a phase
:math:`\phi_{i,t}`, with :math:`v_{i,t} = a_{i,t} + i\phi_{i,t}` and

.. math::  \psi_i(t \mid s_{<i}) = \frac{e^{v_{i,t}}}{\sqrt{\sum_{t'} |e^{v_{i,t'}}|^2}},
           \qquad \log\psi_i(t) = a_{i,t} - \tfrac12 \log\sum_{t'} e^{2 a_{i,t'}} + i\,\phi_{i,t},

so that :math:`\sum_t |\psi_i(t|s_{<i})|^2 = 1` for every prefix and hence
:math:`\sum_s |\psi(s)|^2 = 1` exactly (the paper's eq. (2)). The energy
gradient is then eq. (4) of the paper, which
:mod:`distnqs.estimators.gradient` already computes.

Network: a PixelCNN-style stack of masked convolutions without blind spot
(the vertical / horizontal two-stack split of the gated PixelCNN, van den
Oord et al. 2016, with residual connections). A masked :math:`K \times K`
kernel that sees only earlier sites is split into

- a *vertical* stack :math:`v^l(y, x)`, kernel :math:`(K/\!/2+1) \times K`
  over rows :math:`y-K/\!/2 \ldots y` and columns :math:`x \pm K/\!/2`; its
  first layer reads the input shifted down by one row, so :math:`v^l(y, x)`
  depends on rows :math:`< y` only;
- a *horizontal* stack :math:`h^l(y, x)`, kernel :math:`1 \times (K/\!/2+1)`
  over columns :math:`x-K/\!/2 \ldots x` of its own row, plus a
  :math:`1\times1` link from :math:`v^l(y,x)`; its first layer reads the
  input shifted right by one column, so :math:`h^l(y, x)` depends on sites
  :math:`< i` in raster order only.

Layers (:math:`g` the activation, :math:`l = 1 \ldots D-1`):

.. math::  v^0 = g(V_0 * \mathrm{down}(s) + b^v_0), \quad
           h^0 = g(H_0 * \mathrm{right}(s) + P_0 v^0 + b^h_0),
.. math::  v^l = v^{l-1} + g(V_l * v^{l-1} + b^v_l), \quad
           h^l = h^{l-1} + g(H_l * h^{l-1} + P_l v^l + b^h_l),
.. math::  (a_{i,t}, \phi_{i,t}) = W_\mathrm{out} h^{D-1}(y, x) + b_\mathrm{out}.

Zero padding at the open edges. After :math:`D` layers the receptive field
of site :math:`(y,x)` is every earlier site within :math:`D\,K/\!/2` rows
above and columns either side (20 layers of :math:`K=3` cover a 21 x 21
lattice). A chain (``Ly = 1``) uses the horizontal stack alone.

Options for Heisenberg models:

- ``marshall_sign``: :math:`\log\psi \mathrel{+}= i\pi N^A_\uparrow`, the number
  of up spins on sublattice A (:math:`x+y` even), i.e. the factor
  :math:`(-1)^{N^A_\uparrow}`; put into the conditionals as a phase
  :math:`\pi` of :math:`t=+1` on A sites (leaves every :math:`|\psi_i|` unchanged).
- ``zero_magnetization``: at site :math:`i`, with :math:`n_\uparrow` up and
  :math:`n_\downarrow` down spins before it, a state whose count would exceed
  :math:`N/2` cannot reach :math:`\sum_i s_i = 0`; its probability is set to
  exactly 0 (:math:`a_{i,t} = -\infty`) before the normalization above.

Sampling (:meth:`NAQS.sample`) is exact and i.i.d.: draw :math:`s_0`, then
:math:`s_1 | s_0`, ... from :math:`|\psi_i(\cdot|s_{<i})|^2`. The *cached*
sampler keeps every layer's inputs in rolling buffers (the last
:math:`K/\!/2+1` rows of each vertical layer, the last :math:`K/\!/2+1`
columns of each horizontal layer), computes a vertical row once per lattice
row and one horizontal pixel per site and layer, so a full configuration
costs about one forward pass (the paper's Fig. 1b). The *uncached* sampler
recomputes the whole network at each of the :math:`N` sites (N passes).
Both draw site :math:`i` with the uniform number of ``fold_in(key, i)`` and
give the same samples for the same key.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from distnqs.errors import ConfigError

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "selu": jax.nn.selu,
    "elu": jax.nn.elu,
    "tanh": jnp.tanh,
}

def _conv_valid(z, kernel):
    r""":math:`o(y,x) = \sum_{a,b} z(y+a, x+b)\,W(a,b)` (cross-correlation, no padding).

    ``z`` is ``(batch, H, W, C_in)``, ``kernel`` ``(kh, kw, C_in, C_out)``. Done
    as one matrix product over the stacked shifted copies of ``z`` (im2col):
    XLA's float64 CPU convolution (and its transpose) is far slower than its GEMM.
    """
    kh, kw, cin, cout = kernel.shape
    H, W = z.shape[1] - kh + 1, z.shape[2] - kw + 1
    patches = jnp.concatenate([z[:, a : a + H, b : b + W, :] for a in range(kh) for b in range(kw)], axis=-1)
    return patches @ kernel.reshape(kh * kw * cin, cout)


def _vertical_conv(z, kernel, R):
    """Vertical stack: output (y, x) reads rows y-R..y, columns x-R..x+R (zero padded)."""
    return _conv_valid(jnp.pad(z, ((0, 0), (R, 0), (R, R), (0, 0))), kernel)


def _horizontal_conv(z, kernel, R):
    """Horizontal stack: output (y, x) reads row y, columns x-R..x (zero padded)."""
    return _conv_valid(jnp.pad(z, ((0, 0), (0, 0), (R, 0), (0, 0))), kernel)


def _scaled_normal(fan_in: int, scale: float):
    """Normal initializer with standard deviation ``scale / sqrt(fan_in)``.

    Drawn as a flat vector and reshaped: bit-identical to ``normal(key, shape)`` (threefry
    counters run over the flattened index), but XLA's CPU compiler takes seconds for the
    N-dimensional draw (a (2, 3, 5, 16, 16) kernel: 3.6 s against 0.3 s flat), once per shape
    and process, at every start of a run.
    """

    def init(key, shape, dtype=jnp.float64):
        return scale / np.sqrt(fan_in) * jax.random.normal(key, (int(np.prod(shape)),), dtype).reshape(shape)

    return init


def log_conditionals_from_outputs(out, n_up_before, n_sites: int, site_index, marshall_mask, zero_magnetization: bool):
    r"""Normalized :math:`\log\psi_i(t|s_{<i})` from the network outputs.

    ``out[..., k, 0]`` is :math:`a_{i,t}` and ``out[..., k, 1]`` is :math:`\phi_{i,t}`
    for local state :math:`t = 2k-1`; returns complex ``out.shape[:-1]``:
    :math:`a_{i,t} - \tfrac12\log\sum_{t'}e^{2a_{i,t'}} + i(\phi_{i,t} + \pi[t=+1, i\in A])`,
    with forbidden states (``zero_magnetization``) at :math:`a = -\infty`.
    ``n_up_before`` is the number of up spins among sites :math:`< i`,
    ``site_index`` is :math:`i` (both broadcast against ``out[..., 0, 0]``),
    ``marshall_mask`` (same broadcast) is 1 on sublattice A when the Marshall sign is on, else 0.
    """
    log_mag = out[..., 0]
    phase = out[..., 1]
    if zero_magnetization:
        half = n_sites // 2
        n_down_before = site_index - n_up_before
        forbidden = jnp.stack([n_down_before >= half, n_up_before >= half], axis=-1)
        log_mag = jnp.where(forbidden, -jnp.inf, log_mag)
    log_norm = 0.5 * jax.nn.logsumexp(2.0 * log_mag, axis=-1, keepdims=True)
    phase = phase + jnp.stack([jnp.zeros_like(marshall_mask), jnp.pi * marshall_mask], axis=-1)
    return (log_mag - log_norm) + 1j * phase


class NAQS(nn.Module):
    r"""Autoregressive PixelCNN wave function (see the module docstring for the equations).

    Fields: ``Lx``, ``Ly`` (filled from the lattice), ``depth`` :math:`D` (masked
    layers), ``features`` (channels per stack), ``kernel_size`` :math:`K`
    (odd), ``activation``, ``marshall_sign``, ``zero_magnetization``,
    ``cached`` (which sampler :meth:`sample` uses), ``output_scale`` (initial
    size of the output layer: small values start near the uniform state),
    ``phase_scale`` (the same for the phase columns), ``phase`` (``False``: no
    phase outputs, :math:`\phi_{i,t} = 0`, so :math:`\psi \ge 0` up to the
    Marshall sign: the right ansatz for stoquastic Hamiltonians such as the
    TFIM and the Marshall-rotated Heisenberg model, and the convention of
    NetKet's real-parameter ARNNs. With phases, Adam moves the phase
    parameters, whose gradients are pure noise for a positive ground state,
    by about the learning rate every step). ``dtype``: the arithmetic of
    the convolutional layers (``float32`` runs them about twice as fast on
    CPUs and GPUs); parameters, their gradients, the output layer's results
    and everything after them (normalized conditionals, :math:`\log\psi`,
    local energies, all reductions) stay in ``param_dtype``.
    """

    Lx: int
    Ly: int = 1
    depth: int = 4
    features: int = 16
    kernel_size: int = 3
    activation: str = "gelu"
    marshall_sign: bool = False
    zero_magnetization: bool = False
    cached: bool = True
    output_scale: float = 0.1
    phase_scale: float = 0.0
    phase: bool = True
    param_dtype: Any = jnp.float64
    dtype: Any = None  # arithmetic of the layers (None: param_dtype); see the class docstring

    is_autoregressive = True  # read by Ansatz.is_autoregressive (class attribute, not a field)

    def __post_init__(self):
        for name in ("Lx", "Ly", "depth", "features", "kernel_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"naqs {name} must be a positive integer, got {value!r}")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"naqs kernel_size must be odd (a centred masked kernel), got {self.kernel_size}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown naqs activation {self.activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
        if self.Lx * self.Ly < 2:
            raise ConfigError("naqs needs at least 2 sites")
        if self.zero_magnetization and (self.Lx * self.Ly) % 2:
            raise ConfigError(f"naqs zero_magnetization needs an even number of sites, got {self.Lx * self.Ly}")
        super().__post_init__()

    # ------------------------------------------------------------------
    # Parameters
    # ------------------------------------------------------------------

    @property
    def n_sites(self) -> int:
        return self.Lx * self.Ly

    @property
    def one_d(self) -> bool:
        return self.Ly == 1

    def setup(self):
        F, K, dt = self.features, self.kernel_size, self.param_dtype
        R = K // 2
        L = self.depth - 1
        w = {}
        if not self.one_d:
            w["v_in_kernel"] = self.param("v_in_kernel", _scaled_normal((R + 1) * K, 1.0), (R + 1, K, 1, F), dt)
            w["v_in_bias"] = self.param("v_in_bias", nn.initializers.zeros, (F,), dt)
            w["v_kernel"] = self.param("v_kernel", _scaled_normal((R + 1) * K * F, 1.0), (L, R + 1, K, F, F), dt)
            w["v_bias"] = self.param("v_bias", nn.initializers.zeros, (L, F), dt)
            w["link_in"] = self.param("link_in", _scaled_normal(F, 1.0), (F, F), dt)
            w["link"] = self.param("link", _scaled_normal(F, 1.0), (L, F, F), dt)
        w["h_in_kernel"] = self.param("h_in_kernel", _scaled_normal(R + 1, 1.0), (1, R + 1, 1, F), dt)
        w["h_in_bias"] = self.param("h_in_bias", nn.initializers.zeros, (F,), dt)
        w["h_kernel"] = self.param("h_kernel", _scaled_normal((R + 1) * F, 1.0), (L, 1, R + 1, F, F), dt)
        w["h_bias"] = self.param("h_bias", nn.initializers.zeros, (L, F), dt)
        # columns (k, 0): log-magnitude of state k, (k, 1): its phase; without phases only the (k, 0)
        n_out = 4 if self.phase else 2
        column_scale = jnp.asarray([self.output_scale, self.phase_scale] * 2 if self.phase else [self.output_scale] * 2, dt)
        w["out_kernel"] = self.param("out_kernel", lambda k, shape, d: _scaled_normal(F, 1.0)(k, shape, d) * column_scale, (F, n_out), dt)
        w["out_bias"] = self.param("out_bias", nn.initializers.zeros, (n_out,), dt)
        compute = self.dtype or dt
        # the output layer's result goes back to param_dtype (_head): conditionals and sums stay float64
        self.weights = {k: v.astype(compute) for k, v in w.items()}

    def _head(self, h):
        r"""Output layer: :math:`(a_{i,t}, \phi_{i,t})` of shape ``h.shape[:-1] + (2, 2)``; :math:`\phi = 0` without ``phase``."""
        w = self.weights
        out = (h @ w["out_kernel"] + w["out_bias"]).astype(self.param_dtype)
        if self.phase:
            return out.reshape(*h.shape[:-1], 2, 2)
        return jnp.stack([out, jnp.zeros_like(out)], axis=-1)

    def _act(self, x):
        return ACTIVATIONS[self.activation](x)

    def _marshall_mask(self):
        """(N,) array: 1 on sublattice A (x + y even) when the Marshall sign is on, else 0."""
        if not self.marshall_sign:
            return jnp.zeros((self.n_sites,))
        y, x = np.divmod(np.arange(self.n_sites), self.Lx)
        return jnp.asarray(((x + y) % 2 == 0).astype(np.float64))

    def fast_update(self):
        """Local energies of spin-flip Hamiltonians from the cached layers (:mod:`distnqs.models.naqs_fast`)."""
        from distnqs.models.naqs_fast import NAQSFastUpdate

        return NAQSFastUpdate(self)

    # ------------------------------------------------------------------
    # Full forward pass
    # ------------------------------------------------------------------

    def activations(self, s):
        r"""Every layer's stacks for spins ``s`` ``(batch, N)``: ``(v, h)``, each ``(D, batch, Ly, Lx, F)``
        (:math:`v^l`, :math:`h^l` of the module docstring; ``v`` is ``None`` for a chain)."""
        return self._stacks(s, keep_layers=True)

    def outputs(self, s):
        r"""Raw outputs :math:`(a_{i,t}, \phi_{i,t})`, shape ``(batch, N, 2, 2)``, for spins ``s`` ``(batch, N)``.

        Row ``i`` depends on :math:`s_{<i}` only (masked convolutions).
        """
        _, h = self._stacks(s, keep_layers=False)
        return self._head(h).reshape(s.shape[0], self.n_sites, 2, 2)

    def _stacks(self, s, keep_layers: bool):
        """The stacks after the last layer ``(v, h)`` ``(batch, Ly, Lx, F)``, or of every layer (leading axis D)."""
        w = self.weights
        act = self._act
        R = self.kernel_size // 2
        batch = s.shape[0]
        dt = w["out_kernel"].dtype
        x = s.astype(dt).reshape(batch, self.Ly, self.Lx, 1)
        x_right = jnp.pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, : self.Lx]

        def collect(first, last, layers):
            if not keep_layers:
                return last
            return jax.tree_util.tree_map(lambda f, ls: jnp.concatenate([f[None], ls], axis=0), first, layers)

        if self.one_d:
            h0 = act(_horizontal_conv(x_right, w["h_in_kernel"], R) + w["h_in_bias"])

            def layer(h, p):
                hk, hb = p
                h = h + act(_horizontal_conv(h, hk, R) + hb)
                return h, (h if keep_layers else None)

            h, hs = jax.lax.scan(layer, h0, (w["h_kernel"], w["h_bias"]))
            return None, collect(h0, h, hs)
        x_down = jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, : self.Ly]
        v0 = act(_vertical_conv(x_down, w["v_in_kernel"], R) + w["v_in_bias"])
        h0 = act(_horizontal_conv(x_right, w["h_in_kernel"], R) + v0 @ w["link_in"] + w["h_in_bias"])

        def layer(carry, p):
            v, h = carry
            vk, vb, hk, hb, link = p
            v = v + act(_vertical_conv(v, vk, R) + vb)
            h = h + act(_horizontal_conv(h, hk, R) + v @ link + hb)
            return (v, h), ((v, h) if keep_layers else None)

        vh, layers = jax.lax.scan(layer, (v0, h0), (w["v_kernel"], w["v_bias"], w["h_kernel"], w["h_bias"], w["link"]))
        return collect((v0, h0), vh, layers)

    def conditionals(self, s):
        r""":math:`\log\psi_i(t \mid s_{<i})` for both local states, complex ``(batch, N, 2)``.

        Index ``k`` of the last axis is the state :math:`t = 2k - 1`;
        :math:`\sum_t |\psi_i(t|s_{<i})|^2 = 1` for every ``i`` (row ``i`` ignores :math:`s_{\ge i}`).
        """
        s = jnp.asarray(s)
        up = (s > 0).astype(jnp.int32)
        n_up_before = jnp.cumsum(up, axis=-1) - up
        site = jnp.arange(self.n_sites)
        return log_conditionals_from_outputs(
            self.outputs(s), n_up_before, self.n_sites, site, self._marshall_mask(), self.zero_magnetization
        )

    def __call__(self, s):
        r""":math:`\log\psi(s) = \sum_i \log\psi_i(s_i|s_{<i})` (eq. (3)), complex ``(batch,)``."""
        if s.shape[-1] != self.n_sites:
            raise ConfigError(f"naqs on {self.Lx}x{self.Ly} = {self.n_sites} sites got configurations of {s.shape[-1]} sites")
        lc = self.conditionals(s)
        k = (s > 0).astype(jnp.int32)
        return jnp.sum(jnp.take_along_axis(lc, k[..., None], axis=-1)[..., 0], axis=-1)

    # ------------------------------------------------------------------
    # Exact sampling
    # ------------------------------------------------------------------

    @staticmethod
    def _draw(log_cond, key):
        r"""Draw :math:`t = \pm1` with :math:`P(t=+1) = |\psi_i(+1)|^2` from ``log_cond`` ``(batch, 2)``."""
        p_up = jnp.exp(2.0 * jnp.real(log_cond[:, 1]))
        u = jax.random.uniform(key, p_up.shape, dtype=p_up.dtype)
        return jnp.where(u < p_up, 1.0, -1.0)

    def sample(self, key, n_samples: int):
        """``n_samples`` exact i.i.d. configurations ``(n_samples, N)`` (cached or uncached per ``self.cached``)."""
        s = self.sample_cached(key, n_samples) if self.cached else self.sample_uncached(key, n_samples)
        return s.astype(self.param_dtype)

    def sample_uncached(self, key, n_samples: int):
        r"""Exact sampling recomputing the whole network at every site (N forward passes).

        Site :math:`i`: :math:`s_i \sim |\psi_i(\cdot|s_{<i})|^2` with the uniform draw of ``fold_in(key, i)``.
        """
        N = self.n_sites
        dt = self.weights["out_kernel"].dtype

        def site(i, s):
            lc = jax.lax.dynamic_index_in_dim(self.conditionals(s), i, axis=1, keepdims=False)
            return s.at[:, i].set(self._draw(lc, jax.random.fold_in(key, i)).astype(dt))

        return jax.lax.fori_loop(0, N, site, jnp.zeros((n_samples, N), dt))

    def sample_cached(self, key, n_samples: int):
        r"""Exact sampling with per-layer caches: about one forward pass per configuration.

        Outer loop over rows :math:`y`: each vertical layer's new row is
        computed from a rolling buffer of its input's last :math:`K/\!/2+1`
        rows. Inner loop over columns :math:`x`: each horizontal layer's new
        pixel from a rolling buffer of its input's last :math:`K/\!/2+1`
        columns and the vertical row; then :math:`s_{yL_x+x}` is drawn.
        Same random numbers as :meth:`sample_uncached`.
        """
        return self._cached_pass(key, n_samples)[0]

    def conditionals_cached(self, s):
        r""":math:`\log\psi_i(t|s_{<i})` ``(batch, N, 2)`` computed by the cached sampler's recursion
        with the given ``s`` fed in instead of drawn (a check of the caches against :meth:`conditionals`)."""
        s = jnp.asarray(s)
        return self._cached_pass(None, s.shape[0], s)[1]

    def _cached_pass(self, key, n_samples: int, forced=None):
        """Site-by-site pass with rolling caches; returns (spins (n, N), log conditionals (n, N, 2)).

        Draws site i with ``fold_in(key, i)``, or takes ``forced[:, i]`` when given.
        """
        w = self.weights
        act = self._act
        Lx, Ly, N, F = self.Lx, self.Ly, self.n_sites, self.features
        R = self.kernel_size // 2
        n = n_samples
        dt = w["out_kernel"].dtype
        marshall = self._marshall_mask()
        P = R + 1  # column offset of site x = 0 in s_pad (R + 1 zero columns on the left, R on the right)
        # s_pad[:, R + 1 + y, P + x] = s(y, x); the R + 1 zero rows on top give the vertical stack its shift.
        s_pad = jnp.zeros((n, Ly + R + 1, Lx + 2 * R + 1), dt)
        h_in_k = w["h_in_kernel"][0, :, 0, :]  # (R+1, F): taps on columns x-R-1 .. x-1
        h_k = w["h_kernel"][:, 0]  # (L, R+1, F, F)

        def pixel(carry, x, y, v_rows):
            """One site (y, x): every horizontal layer's new pixel, then the draw."""
            s_pad, n_up, h_buf = carry
            i = y * Lx + x
            s_left = jax.lax.dynamic_slice(s_pad, (0, R + 1 + y, x), (n, 1, R + 1))[:, 0]  # s(y, x-R-1 .. x-1)
            pre = s_left @ h_in_k + w["h_in_bias"]
            if v_rows is not None:
                v_here = jax.lax.dynamic_index_in_dim(v_rows, x, axis=2, keepdims=False)  # (D, n, F)
                pre = pre + v_here[0] @ w["link_in"]
            h = act(pre)

            def layer(h_prev, p):
                buf, hk, hb, link, v = p
                buf = jnp.concatenate([buf[:, 1:], h_prev[:, None]], axis=1)  # h^{l-1}(y, x-R .. x)
                pre = jnp.einsum("nbf,bfg->ng", buf, hk) + hb
                if link is not None:
                    pre = pre + v @ link
                return h_prev + act(pre), buf

            if v_rows is None:
                h, h_buf = jax.lax.scan(layer, h, (h_buf, h_k, w["h_bias"], None, None))
            else:
                h, h_buf = jax.lax.scan(layer, h, (h_buf, h_k, w["h_bias"], w["link"], v_here[1:]))
            out = self._head(h)
            lc = log_conditionals_from_outputs(out, n_up, N, i, marshall[i], self.zero_magnetization)
            if forced is None:
                t = self._draw(lc, jax.random.fold_in(key, i)).astype(dt)
            else:
                t = jax.lax.dynamic_index_in_dim(forced, i, axis=1, keepdims=False).astype(dt)
            s_pad = jax.lax.dynamic_update_slice(s_pad, t[:, None, None], (0, R + 1 + y, P + x))
            return (s_pad, n_up + (t > 0).astype(n_up.dtype), h_buf), lc

        def row(carry, y):
            s_pad, n_up, v_buf = carry
            if self.one_d:
                v_rows = None
            else:
                # vertical layer 0 reads s rows y-R-1 .. y-1, columns -R .. Lx-1+R
                s_rows = jax.lax.dynamic_slice(s_pad, (0, y, 1), (n, R + 1, Lx + 2 * R))[..., None]
                v0 = act(_conv_valid(s_rows, w["v_in_kernel"])[:, 0] + w["v_in_bias"])  # (n, Lx, F)

                def vlayer(v_prev, p):
                    buf, vk, vb = p
                    new = jnp.pad(v_prev, ((0, 0), (R, R), (0, 0)))[:, None]
                    buf = jnp.concatenate([buf[:, 1:], new], axis=1)  # v^{l-1} rows y-R .. y (padded columns)
                    v = v_prev + act(_conv_valid(buf, vk)[:, 0] + vb)
                    return v, (buf, v)

                _, (v_buf, v_rest) = jax.lax.scan(vlayer, v0, (v_buf, w["v_kernel"], w["v_bias"]))
                v_rows = jnp.concatenate([v0[None], v_rest], axis=0)  # (D, n, Lx, F)
            h_buf = jnp.zeros((self.depth - 1, n, R + 1, F), dt)
            (s_pad, n_up, _), lc = jax.lax.scan(
                lambda c, x: pixel(c, x, y, v_rows), (s_pad, n_up, h_buf), jnp.arange(Lx)
            )
            return (s_pad, n_up, v_buf), lc

        v_buf = jnp.zeros((self.depth - 1, n, R + 1, Lx + 2 * R, F), dt) if not self.one_d else None
        (s_pad, _, _), lc = jax.lax.scan(row, (s_pad, jnp.zeros((n,), jnp.int32), v_buf), jnp.arange(Ly))
        samples = s_pad[:, R + 1 :, P : P + Lx].reshape(n, N)
        return samples, jnp.moveaxis(lc.reshape(N, n, 2), 0, 1)
