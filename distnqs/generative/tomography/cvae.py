r"""Conditional variational autoencoder for POVM outcome distributions.

Model (Luchnikov et al., Entropy 21, 1091 (2019)), outcomes one-hot
:math:`x \in \{0,1\}^{N\times K}` (:math:`K = 4` outcomes per site, site order
as in :mod:`.povm`), field :math:`h`, latent :math:`z \in \mathbb{R}^{d}`:

- encoder :math:`q_\phi(z|x,h) = \mathcal N(z;\, \mu_\phi(x,h),\, \mathrm{diag}\, e^{\ell_\phi(x,h)})`
  (an MLP returns mean and log-variance);
- prior :math:`p(z) = \mathcal N(0, 1)` (independent of :math:`h`);
- decoder, one of

  * ``"factorized"`` (the paper's): :math:`p_\theta(x|z,h) = \prod_{i} \pi_{i}(a_i|z,h)`,
    a per-site softmax over the :math:`K` outcomes (an MLP of :math:`(z, h)`);
    all correlations between sites must be carried by :math:`z`;
  * ``"autoregressive"`` (not in the paper):
    :math:`p_\theta(x|z,h) = \prod_{i=0}^{N-1} \pi_{i}(a_i|a_{<i},z,h)`, a
    MADE-style masked MLP (Germain et al. 2015) in the site order
    :math:`0, 1, \ldots, N-1`, conditioned on :math:`(z, h)` in every layer
    (see :class:`AutoregressiveDecoder`); normalized exactly for every
    :math:`(z, h)`. One pass with the data as input ("teacher forcing") gives all
    :math:`N` conditionals, so training costs about the same as the factorized decoder;
    sampling draws the sites in order (:math:`N` passes).

Training maximizes the evidence lower bound, averaged over the data of all fields,

.. math::
    \mathrm{ELBO}(x, h) = \mathbb E_{\varepsilon\sim\mathcal N(0,1)}
      \big[\ln p_\theta(x|\mu + e^{\ell/2}\odot\varepsilon, h)\big]
      - \beta\, \mathrm{KL}\big(q_\phi(z|x,h)\,\|\,p(z)\big),\qquad
    \mathrm{KL} = \tfrac12\sum_k(\mu_k^2 + e^{\ell_k} - 1 - \ell_k),

with one reparametrized draw of :math:`\varepsilon` per sample and :math:`\beta`
raised linearly from 0 to 1 over ``kl_warmup`` steps (then the true ELBO).
Optionally (``importance_samples = K > 1``, not in the paper) the tighter
importance-weighted bound :math:`\mathcal L_K` of :func:`importance_weighted_bound`
is maximized instead (no :math:`\beta`).

The field enters every hidden layer of encoder and decoder (it is
concatenated to each layer's input), so the decoder's dependence on
:math:`h` is learned directly instead of through the latent code.
The generative model is :math:`p_\theta(a|h) = \mathbb E_{z\sim\mathcal N(0,1)}\, p_\theta(a|z,h)`;
sampling draws :math:`z \sim \mathcal N(0,1)`, then each site's outcome (all at once for the
factorized decoder, site by site for the autoregressive one).

All randomness comes from explicit ``jax.random`` keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

_DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


class Encoder(nn.Module):
    """MLP :math:`(x, h) \\mapsto (\\mu, \\ell)`, each of length ``latent_dim``."""

    latent_dim: int
    hidden: Sequence[int]
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, onehot: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array]:
        cond = h[:, None].astype(self.dtype)
        x = onehot.reshape(onehot.shape[0], -1).astype(self.dtype)
        for width in self.hidden:
            x = nn.elu(nn.Dense(width, dtype=self.dtype, param_dtype=self.dtype)(jnp.concatenate([x, cond], axis=-1)))
        mean = nn.Dense(self.latent_dim, dtype=self.dtype, param_dtype=self.dtype)(x)
        logvar = nn.Dense(self.latent_dim, dtype=self.dtype, param_dtype=self.dtype)(x)
        return mean, logvar


class Decoder(nn.Module):
    """MLP :math:`(z, h) \\mapsto \\ln\\pi_i(a|z,h)`, shape ``(B, N, K)`` (log-softmax over ``a``)."""

    n_sites: int
    hidden: Sequence[int]
    n_outcomes: int = 4
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, h: jax.Array) -> jax.Array:
        cond = h[:, None].astype(self.dtype)
        x = z.astype(self.dtype)
        for width in self.hidden:
            x = nn.elu(nn.Dense(width, dtype=self.dtype, param_dtype=self.dtype)(jnp.concatenate([x, cond], axis=-1)))
        logits = nn.Dense(self.n_sites * self.n_outcomes, dtype=self.dtype, param_dtype=self.dtype)(jnp.concatenate([x, cond], axis=-1))
        return jax.nn.log_softmax(logits.reshape(-1, self.n_sites, self.n_outcomes), axis=-1)


def made_masks(n_sites: int, n_outcomes: int, hidden: Sequence[int]) -> list[np.ndarray]:
    r"""Connectivity masks of the masked MLP of :class:`AutoregressiveDecoder`.

    Degrees (MADE, Germain et al. 2015, with a "context" degree 0): the one-hot
    input of site :math:`i = 0..N-1` has degree :math:`d = i + 1`; hidden unit
    :math:`k` of every layer has degree :math:`m_k = k \bmod N \in \{0..N-1\}`;
    output site :math:`i` has degree :math:`i + 1`. Connections allowed:
    input :math:`\to` hidden if :math:`m \ge d`, hidden :math:`\to` hidden if
    :math:`m' \ge m`, hidden :math:`\to` output if :math:`d_{out} > m`.
    So hidden units of degree :math:`m` depend on sites :math:`0..m-1` only and
    the logits of site :math:`i` on sites :math:`0..i-1` only (degree-0 units
    see only the context :math:`(z, h)`, which feeds every unit unmasked).
    Returns one boolean ``(fan_in, fan_out)`` mask per layer (last: output layer).
    """
    in_deg = np.repeat(np.arange(1, n_sites + 1), n_outcomes)
    masks, prev = [], in_deg
    for width in hidden:
        deg = np.arange(width) % n_sites
        masks.append(deg[None, :] >= prev[:, None])
        prev = deg
    masks.append(in_deg[None, :] > prev[:, None])
    return masks


class AutoregressiveDecoder(nn.Module):
    r"""Masked MLP :math:`(x, z, h) \mapsto \ln\pi_i(a|a_{<i}, z, h)`, shape ``(B, N, K)``.

    With :math:`x` the ``(B, N, K)`` (one-hot or relaxed) outcomes and
    :math:`c = (z, h)` the context, layer :math:`l` computes

    .. math:: u^{(l)} = \mathrm{elu}\big((W^{(l)}\odot M^{(l)})^T u^{(l-1)} + V^{(l)} c + b^{(l)}\big),
              \quad u^{(0)} = \mathrm{vec}(x),

    and the logits are :math:`(W^{\rm out}\odot M^{\rm out})^T u^{(L)} + V^{\rm out} c + b^{\rm out}`,
    log-softmaxed per site; :math:`M` from :func:`made_masks`. Output ``[:, i]`` is
    therefore the exact conditional of site :math:`i` given the input's sites
    :math:`< i` (entries of ``x`` at sites :math:`\ge i` are ignored), and
    :math:`\sum_a \prod_i \pi_i(a_i|a_{<i},z,h) = 1` exactly for every :math:`(z, h)`.
    """

    n_sites: int
    hidden: Sequence[int]
    n_outcomes: int = 4
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, h: jax.Array, x: jax.Array) -> jax.Array:
        ctx = jnp.concatenate([z.astype(self.dtype), h[:, None].astype(self.dtype)], axis=-1)
        u = x.reshape(x.shape[0], -1).astype(self.dtype)
        masks = made_masks(self.n_sites, self.n_outcomes, self.hidden)
        widths = [*self.hidden, self.n_sites * self.n_outcomes]
        for layer, (width, mask) in enumerate(zip(widths, masks)):
            kernel = self.param(f"masked_{layer}", nn.initializers.lecun_normal(), (u.shape[-1], width), self.dtype)
            u = u @ (kernel * jnp.asarray(mask, self.dtype)) + nn.Dense(width, dtype=self.dtype, param_dtype=self.dtype,
                                                                        name=f"context_{layer}")(ctx)
            if layer < len(self.hidden):
                u = nn.elu(u)
        return jax.nn.log_softmax(u.reshape(-1, self.n_sites, self.n_outcomes), axis=-1)


DECODERS = ("factorized", "autoregressive")


class ConditionalVAE(nn.Module):
    """Encoder + decoder; ``__call__(onehot, h, eps)`` returns
    ``(log_probs, mean, logvar)`` with :math:`z = \\mu + e^{\\ell/2}\\varepsilon`
    and ``log_probs`` the decoder's :math:`\\ln\\pi_i` at the data ``onehot``
    (for the autoregressive decoder the conditionals given the data's sites :math:`< i`).
    ``decoder`` is ``"factorized"`` or ``"autoregressive"``."""

    n_sites: int
    latent_dim: int
    hidden: Sequence[int] = (128, 128)
    n_outcomes: int = 4
    dtype: jnp.dtype = jnp.float32
    decoder_kind: str = "factorized"

    def setup(self):
        self.encoder = Encoder(self.latent_dim, self.hidden, self.dtype)
        if self.decoder_kind == "factorized":
            self.decoder = Decoder(self.n_sites, self.hidden, self.n_outcomes, self.dtype)
        elif self.decoder_kind == "autoregressive":
            self.decoder = AutoregressiveDecoder(self.n_sites, self.hidden, self.n_outcomes, self.dtype)
        else:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder_kind!r}")

    @property
    def autoregressive(self) -> bool:
        return self.decoder_kind == "autoregressive"

    def encode(self, onehot, h):
        return self.encoder(onehot, h)

    def decode(self, z, h, x=None):
        if self.decoder_kind == "autoregressive":
            return self.decoder(z, h, x)
        return self.decoder(z, h)

    def __call__(self, onehot, h, eps):
        mean, logvar = self.encoder(onehot, h)
        z = mean + jnp.exp(0.5 * logvar) * eps
        return self.decode(z, h, onehot), mean, logvar


def make_model(n_sites: int, latent_dim: int | None = None, hidden: Sequence[int] = (128, 128), dtype: str = "float32",
               decoder: str = "factorized") -> ConditionalVAE:
    """A :class:`ConditionalVAE` with ``latent_dim = N`` unless given and the
    ``decoder`` ``"factorized"`` (default, the paper's) or ``"autoregressive"``."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    return ConditionalVAE(n_sites=n_sites, latent_dim=latent_dim or n_sites, hidden=tuple(hidden), dtype=_DTYPES[dtype],
                          decoder_kind=decoder)


def init_params(model: ConditionalVAE, key: jax.Array):
    """Parameters from ``key`` (flax default initializers)."""
    onehot = jnp.zeros((1, model.n_sites, model.n_outcomes), model.dtype)
    return model.init(key, onehot, jnp.zeros((1,), model.dtype), jnp.zeros((1, model.latent_dim), model.dtype))


def elbo_terms(params, model: ConditionalVAE, outcomes: jax.Array, h: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-sample reconstruction term :math:`\\ln p_\\theta(x|z,h)` (one
    reparametrized draw) and :math:`\\mathrm{KL}(q\\|p)`; ``ELBO = rec - KL``."""
    onehot = jax.nn.one_hot(outcomes, model.n_outcomes, dtype=model.dtype)
    eps = jax.random.normal(key, (outcomes.shape[0], model.latent_dim), model.dtype)
    log_probs, mean, logvar = model.apply(params, onehot, h.astype(model.dtype), eps)
    rec = jnp.sum(onehot * log_probs, axis=(1, 2))
    kl = 0.5 * jnp.sum(mean**2 + jnp.exp(logvar) - 1.0 - logvar, axis=1)
    return rec, kl


def importance_weighted_bound(params, model: ConditionalVAE, outcomes: jax.Array, h: jax.Array, key: jax.Array, n_importance: int):
    r"""Per-sample importance-weighted bound (Burda et al. 2016) with :math:`K` = ``n_importance``
    reparametrized draws :math:`z_k = \mu + e^{\ell/2}\varepsilon_k`:

    .. math:: \mathcal L_K(x,h) = \ln\frac1K\sum_{k=1}^K
              \frac{p_\theta(x|z_k,h)\,p(z_k)}{q_\phi(z_k|x,h)}
              \;\le\; \ln p_\theta(x|h),

    which equals the ELBO for :math:`K = 1` (in expectation) and tightens
    monotonically with :math:`K`. Returns ``(bound, rec, kl)`` per sample, with
    ``rec``, ``kl`` the first draw's reconstruction term and the analytic KL (for logging)."""
    onehot = jax.nn.one_hot(outcomes, model.n_outcomes, dtype=model.dtype)
    h = h.astype(model.dtype)
    mean, logvar = model.apply(params, onehot, h, method=ConditionalVAE.encode)
    batch = outcomes.shape[0]
    eps = jax.random.normal(key, (n_importance, batch, model.latent_dim), model.dtype)
    z = mean + jnp.exp(0.5 * logvar) * eps
    log_probs = decode(model, params, z.reshape(-1, model.latent_dim), jnp.tile(h, n_importance),
                       jnp.tile(onehot, (n_importance, 1, 1)) if model.autoregressive else None)
    rec = jnp.sum(onehot[None] * log_probs.reshape(n_importance, batch, model.n_sites, -1), axis=(2, 3))
    log_ratio = jnp.sum(-0.5 * z**2 + 0.5 * eps**2 + 0.5 * logvar, axis=2)  # ln p(z) - ln q(z|x)
    bound = jax.nn.logsumexp(rec + log_ratio, axis=0) - jnp.log(n_importance)
    kl = 0.5 * jnp.sum(mean**2 + jnp.exp(logvar) - 1.0 - logvar, axis=1)
    return bound, rec[0], kl


def decode(model: ConditionalVAE, params, z: jax.Array, h: jax.Array, x: jax.Array | None = None) -> jax.Array:
    """Decoder log-probabilities, shape ``(B, N, K)``: :math:`\\ln\\pi_i(a|z,h)` (factorized; ``x``
    ignored) or :math:`\\ln\\pi_i(a|x_{<i},z,h)` (autoregressive; ``x`` = one-hot or relaxed
    outcomes ``(B, N, K)``, required)."""
    if model.autoregressive:
        if x is None:
            raise ValueError("the autoregressive decoder's conditionals need the outcomes x of the preceding sites "
                             "(use draw_onehot / sample / outcome_distribution for generation)")
        return model.apply(params, z.astype(model.dtype), h.astype(model.dtype), x.astype(model.dtype), method=ConditionalVAE.decode)
    return model.apply(params, z.astype(model.dtype), h.astype(model.dtype), method=ConditionalVAE.decode)


def draw_onehot(model: ConditionalVAE, params, z: jax.Array, h: jax.Array, gumbel: jax.Array,
                temperature: float | None = None) -> jax.Array:
    r"""Outcomes ``(B, N, K)`` for latents ``z`` ``(B, d)``, fields ``h`` ``(B,)`` and fixed Gumbel
    noise :math:`g` ``(B, N, K)``.

    ``temperature=None``: hard one-hot samples by the Gumbel-max trick,
    :math:`a_i = \arg\max_a(\ln\pi_i(a|\cdot) + g_{i,a})`, which are exact samples of
    :math:`p_\theta(\cdot|z,h)`. ``temperature = \tau > 0``: Gumbel-softmax relaxed
    samples :math:`y_i = \mathrm{softmax}((\ln\pi_i(\cdot|\cdot) + g_i)/\tau)`.
    Factorized decoder: all sites at once from :math:`\pi_i(\cdot|z,h)`. Autoregressive
    decoder: sites in the order :math:`i = 0..N-1`, each conditional evaluated at the
    already drawn (hard or relaxed) :math:`y_{<i}`, i.e.
    :math:`y_i = \mathrm{softmax}((\ln\pi_i(\cdot|y_{<i},z,h) + g_i)/\tau)` (:math:`N` decoder passes);
    the relaxed sample is a smooth function of :math:`h` and tends to the hard one as :math:`\tau\to0`.
    """
    h = h.astype(model.dtype)

    def select(log_probs):
        if temperature is None:
            return jax.nn.one_hot(jnp.argmax(log_probs, axis=-1), model.n_outcomes, dtype=model.dtype)
        return jax.nn.softmax(log_probs / temperature, axis=-1)

    if not model.autoregressive:
        return select(decode(model, params, z, h) + gumbel)

    def body(i, y):
        log_probs = jax.lax.dynamic_index_in_dim(decode(model, params, z, h, y), i, axis=1, keepdims=False)
        g_i = jax.lax.dynamic_index_in_dim(gumbel, i, axis=1, keepdims=False)
        return jax.lax.dynamic_update_index_in_dim(y, select(log_probs + g_i), i, axis=1)

    y0 = jnp.zeros((z.shape[0], model.n_sites, model.n_outcomes), model.dtype)
    return jax.lax.fori_loop(0, model.n_sites, body, y0)


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings: Adam with cosine-decayed learning rate
    (``learning_rate`` to ``learning_rate * final_lr_fraction``), minibatches
    of ``batch_size`` samples drawn uniformly (with replacement) from the data
    of all fields, KL weight warm-up over ``kl_warmup`` steps;
    ``importance_samples > 1`` trains on the importance-weighted bound instead
    of the ELBO (then ``kl_warmup`` is not used)."""

    steps: int = 5000
    batch_size: int = 512
    learning_rate: float = 1e-3
    final_lr_fraction: float = 0.05
    kl_warmup: int = 1000
    seed: int = 0
    chunk: int = 250
    importance_samples: int = 1


def train(
    model: ConditionalVAE,
    outcomes: np.ndarray,
    fields: np.ndarray,
    config: TrainConfig,
    callback: Callable[[int, dict], None] | None = None,
):
    """Fit the CVAE to outcome data ``(F, M, N)`` at ``fields`` ``(F,)`` (all fields at once).

    Keys: ``jax.random.key(config.seed)`` is split into the initialization
    key and the training key; step ``t`` uses ``fold_in(train_key, t)``.
    Runs ``chunk`` optimizer steps per jitted ``lax.scan`` (``steps`` is
    rounded up to a whole number of chunks); ``callback(step, metrics)``
    is called after every chunk with the chunk means of ``loss``, ``rec``, ``kl``, ``beta``.
    Returns ``(params, history)``, history a list of metric dicts.
    """
    n_fields, n_samples, n_sites = outcomes.shape
    data_x = jnp.asarray(outcomes.reshape(-1, n_sites), dtype=jnp.int32)
    data_h = jnp.asarray(np.repeat(np.asarray(fields, dtype=float), n_samples))
    total = data_x.shape[0]
    init_key, train_key = jax.random.split(jax.random.key(config.seed))
    params = init_params(model, init_key)
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.steps, alpha=config.final_lr_fraction)
    optimizer = optax.adam(schedule)
    opt_state = optimizer.init(params)
    warmup = max(config.kl_warmup, 1)

    def loss_fn(p, x, h, key, beta):
        if config.importance_samples > 1:
            bound, rec, kl = importance_weighted_bound(p, model, x, h, key, config.importance_samples)
            return -jnp.mean(bound), (jnp.mean(rec), jnp.mean(kl))
        rec, kl = elbo_terms(p, model, x, h, key)
        return -jnp.mean(rec - beta * kl), (jnp.mean(rec), jnp.mean(kl))

    @jax.jit
    def run_chunk(p, state, start, xs, hs):
        def one_step(carry, step):
            p, state = carry
            key_batch, key_eps = jax.random.split(jax.random.fold_in(train_key, step))
            idx = jax.random.randint(key_batch, (config.batch_size,), 0, total)
            beta = jnp.minimum(1.0, step / warmup).astype(model.dtype)
            (loss, (rec, kl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, xs[idx], hs[idx], key_eps, beta)
            updates, state = optimizer.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), jnp.stack([loss, rec, kl, beta])

        (p, state), metrics = jax.lax.scan(one_step, (p, state), start + jnp.arange(config.chunk))
        return p, state, metrics.mean(axis=0)

    history = []
    step = 0
    t0 = time.perf_counter()
    while step < config.steps:
        params, opt_state, metrics = run_chunk(params, opt_state, step, data_x, data_h)
        step += config.chunk
        loss, rec, kl, beta = (float(v) for v in metrics)
        entry = {"step": step, "loss": loss, "rec": rec, "kl": kl, "beta": beta, "seconds": time.perf_counter() - t0}
        history.append(entry)
        if callback is not None:
            callback(step, entry)
    return params, history


@partial(jax.jit, static_argnames=("model", "n"))
def _sample_chunk(model: ConditionalVAE, params, h, key, n: int) -> jax.Array:
    kz, ka = jax.random.split(key)
    z = jax.random.normal(kz, (n, model.latent_dim), model.dtype)
    hs = jnp.full((n,), h, dtype=model.dtype)
    if model.autoregressive:  # sites in order, Gumbel-max = exact categorical draws
        g = jax.random.gumbel(ka, (n, model.n_sites, model.n_outcomes), model.dtype)
        return jnp.argmax(draw_onehot(model, params, z, hs, g), axis=-1).astype(jnp.uint8)
    log_probs = decode(model, params, z, hs)
    return jax.random.categorical(ka, log_probs, axis=-1).astype(jnp.uint8)


def sample(model: ConditionalVAE, params, h: float, n_samples: int, key: jax.Array, chunk: int = 32768) -> np.ndarray:
    """Outcomes ``(n_samples, N)`` (uint8) from :math:`p_\\theta(a|h)`: :math:`z\\sim\\mathcal N(0,1)`,
    then each site's outcome from its softmax: all sites at once (factorized decoder) or
    site by site in the order :math:`0..N-1`, each from :math:`\\pi_i(\\cdot|a_{<i},z,h)`
    (autoregressive decoder, :math:`N` decoder passes). Chunk ``c`` uses ``split(key)[c]``."""
    n_chunks = -(-n_samples // chunk)
    parts = [np.asarray(_sample_chunk(model, params, h, k, chunk)) for k in jax.random.split(key, n_chunks)]
    return np.concatenate(parts)[:n_samples]


def all_outcomes(n_sites: int, n_outcomes: int = 4) -> np.ndarray:
    """All :math:`K^N` outcome strings ``(K^N, N)`` in flat-index order (site 0 most significant)."""
    return np.stack(np.unravel_index(np.arange(n_outcomes**n_sites), (n_outcomes,) * n_sites), axis=1)


@partial(jax.jit, static_argnames=("model", "n"))
def _distribution_chunk(model: ConditionalVAE, params, h, key, n: int) -> jax.Array:
    z = jax.random.normal(key, (n, model.latent_dim), model.dtype)
    hs = jnp.full((n,), h, dtype=model.dtype)
    n_sites, k = model.n_sites, model.n_outcomes
    if not model.autoregressive:
        probs = jnp.exp(decode(model, params, z, hs).astype(jnp.float64))
        table = probs[:, 0, :]
        for i in range(1, n_sites):
            table = (table[:, :, None] * probs[:, i, None, :]).reshape(n, -1)
        return table.sum(axis=0)
    # autoregressive: one teacher-forced pass per prefix a_{<N-1} (last site's input is never used)
    # gives ln pi_i(a_i|a_{<i}) for every i; outcome a uses prefix row a // K.
    outcomes = all_outcomes(n_sites, k)
    prefixes = jax.nn.one_hot(outcomes[::k], k, dtype=model.dtype)  # (K^(N-1), N, K), last site = 0
    n_pre = prefixes.shape[0]
    log_cond = decode(model, params, jnp.repeat(z, n_pre, axis=0), jnp.repeat(hs, n_pre),
                      jnp.tile(prefixes, (n, 1, 1))).astype(jnp.float64).reshape(n, n_pre, n_sites, k)
    rows = np.arange(outcomes.shape[0]) // k
    log_table = log_cond[:, rows[:, None], np.arange(n_sites)[None, :], outcomes].sum(axis=-1)  # (n, K^N)
    return jnp.exp(log_table).sum(axis=0)


@partial(jax.jit, static_argnames=("model", "n_latent"))
def _importance_chunk(model: ConditionalVAE, params, h, outcomes, key, n_latent: int) -> jax.Array:
    m = outcomes.shape[0]
    onehot = jax.nn.one_hot(outcomes, model.n_outcomes, dtype=model.dtype)
    hs = jnp.full((m,), h, dtype=model.dtype)
    mean, logvar = model.apply(params, onehot, hs, method=ConditionalVAE.encode)
    eps = jax.random.normal(key, (n_latent, m, model.latent_dim), model.dtype)
    z = mean + jnp.exp(0.5 * logvar) * eps
    log_probs = decode(model, params, z.reshape(-1, model.latent_dim), jnp.tile(hs, n_latent),
                       jnp.tile(onehot, (n_latent, 1, 1)) if model.autoregressive else None)
    rec = jnp.sum(onehot[None] * log_probs.reshape(n_latent, m, model.n_sites, -1), axis=(2, 3)).astype(jnp.float64)
    log_ratio = jnp.sum(-0.5 * z**2 + 0.5 * eps**2 + 0.5 * logvar, axis=2).astype(jnp.float64)  # ln p(z) - ln q(z|a,h)
    return jnp.exp(jax.nn.logsumexp(rec + log_ratio, axis=0) - jnp.log(n_latent))


FIDELITY_ESTIMATORS = ("prior", "importance")


def outcome_distribution(model: ConditionalVAE, params, h: float, key: jax.Array, n_latent: int = 1 << 16, chunk: int | None = None,
                         method: str = "prior") -> np.ndarray:
    r"""Monte Carlo estimate of the model distribution :math:`p_\theta(a|h) = \mathbb E_{z\sim\mathcal N(0,1)}\,
    p_\theta(a|z,h)` over all :math:`K^N` outcomes (flat array, site 0 most significant, float64).
    Small N only (:math:`K^N` table).

    ``method="prior"``: :math:`S` = ``n_latent`` (rounded up to whole chunks) draws from the prior,

    .. math:: \hat p(a|h) = \frac1{S}\sum_{s=1}^{S} p_\theta(a|z_s, h),
              \quad z_s \sim \mathcal N(0,1),

    where :math:`p_\theta(a|z,h)` is computed exactly for all :math:`a` at each
    :math:`z_s` (factorized: outer product of the site softmaxes; autoregressive:
    one teacher-forced decoder pass per prefix :math:`a_{<N-1}`, :math:`K^{N-1}` passes
    per :math:`z_s`). Each term is a normalized distribution, so :math:`\sum_a\hat p = 1` exactly,
    and :math:`\hat p(a)` is unbiased for every :math:`a`.

    ``method="importance"``: for every outcome :math:`a`, :math:`L` = ``n_latent`` draws
    from the encoder :math:`z_k \sim q_\phi(z|a,h)`,

    .. math:: \hat p(a|h) = \frac1L\sum_{k=1}^L \frac{p_\theta(a|z_k,h)\, \mathcal N(z_k;0,1)}{q_\phi(z_k|a,h)},

    unbiased for every :math:`a` (the exponential of the IWAE bound's argument), but
    :math:`\sum_a\hat p(a)` is only :math:`1` in expectation. Cost :math:`K^N L` decoder passes.

    Noise in :math:`\hat p` can only lower :math:`\sum_a\sqrt{p\hat p}` on average (:math:`\sqrt{\cdot}` is
    concave); the bias falls like :math:`1/S` and is measured in :mod:`.cli` from two
    independent half-size estimates.
    """
    if method == "prior":
        if chunk is None:  # about 2^18 decoder rows per jitted chunk
            chunk = 4096 if not model.autoregressive else max(1, (1 << 18) // model.n_outcomes ** (model.n_sites - 1))
        keys = jax.random.split(key, -(-n_latent // chunk))
        total = sum(_distribution_chunk(model, params, h, k, chunk) for k in keys)
        return np.asarray(total) / (len(keys) * chunk)
    if method == "importance":
        outcomes = all_outcomes(model.n_sites, model.n_outcomes)
        rows = chunk or max(1, (1 << 17) // n_latent)
        starts = range(0, outcomes.shape[0], rows)
        keys = jax.random.split(key, len(starts))
        parts = []
        for start, k in zip(starts, keys):
            block = outcomes[start:start + rows]
            pad = rows - block.shape[0]
            block = np.concatenate([block, np.zeros((pad, model.n_sites), block.dtype)]) if pad else block
            parts.append(np.asarray(_importance_chunk(model, params, h, jnp.asarray(block, jnp.int32), k, n_latent))[:rows - pad])
        return np.concatenate(parts)
    raise ValueError(f"method must be one of {FIDELITY_ESTIMATORS}, got {method!r}")


# ----------------------------------------------------------------------------- susceptibility


def gumbel_softmax(log_probs: jax.Array, gumbel: jax.Array, temperature: float) -> jax.Array:
    """Relaxed one-hot sample :math:`y = \\mathrm{softmax}((\\ln\\pi + g)/\\tau)`
    with fixed Gumbel noise :math:`g = -\\ln(-\\ln u)`; as :math:`\\tau\\to0`,
    :math:`y \\to \\mathrm{onehot}(\\arg\\max(\\ln\\pi + g))`, an exact sample of :math:`\\pi` (Gumbel-max)."""
    return jax.nn.softmax((log_probs + gumbel) / temperature, axis=-1)


def magnetizations_from_onehot(y: jax.Array, x_table: jax.Array, z_table: jax.Array) -> jax.Array:
    r"""``[mu_x, mu_z]`` from (relaxed) one-hot outcomes ``y`` ``(S, N, K)``:
    :math:`\hat x_i = y_i\cdot o^x`, :math:`\hat z_i = y_i\cdot o^z` (estimator tables),
    :math:`\mu_x = \overline{\sum_i\hat x_i}/N`,
    :math:`\mu_z = [\overline{(\sum_i\hat z_i)^2 - \sum_i\hat z_i^2} + N]^{1/2}/N`
    (see :mod:`.observables`); for hard one-hot ``y`` these are the sample estimators."""
    n = y.shape[1]
    xh = y @ x_table
    zh = y @ z_table
    mu_x = jnp.mean(xh.sum(axis=1)) / n
    m2 = (jnp.mean(zh.sum(axis=1) ** 2 - (zh**2).sum(axis=1)) + n) / n**2
    return jnp.stack([mu_x, jnp.sqrt(jnp.maximum(m2, 0.0))])


@partial(jax.jit, static_argnames=("model", "temperature"))
def relaxed_magnetizations(model: ConditionalVAE, params, h, z, gumbel, tables, temperature: float) -> jax.Array:
    """``[mu_x, mu_z]`` of Gumbel-softmax relaxed samples (fixed ``z``, ``gumbel``; :func:`draw_onehot`
    with ``temperature``); smooth in ``h``."""
    y = draw_onehot(model, params, z, jnp.full((z.shape[0],), h, dtype=model.dtype), gumbel, temperature)
    return magnetizations_from_onehot(y, tables[0], tables[1])


@partial(jax.jit, static_argnames=("model",))
def hard_magnetizations(model: ConditionalVAE, params, h, z, gumbel, tables) -> jax.Array:
    """``[mu_x, mu_z]`` of exact samples :math:`a_i = \\arg\\max(\\ln\\pi_i + g_i)` (Gumbel-max, site by
    site for the autoregressive decoder; :func:`draw_onehot`) with the same noise."""
    y = draw_onehot(model, params, z, jnp.full((z.shape[0],), h, dtype=model.dtype), gumbel)
    return magnetizations_from_onehot(y, tables[0], tables[1])


@partial(jax.jit, static_argnames=("model", "temperature"))
def relaxed_susceptibility(model: ConditionalVAE, params, h, z, gumbel, tables, temperature: float) -> jax.Array:
    """:math:`\\partial_h [\\mu_x, \\mu_z]` of the relaxed estimator by forward-mode autodiff through the decoder."""
    return jax.jacfwd(relaxed_magnetizations, argnums=2)(model, params, h, z, gumbel, tables, temperature)


def susceptibility(
    model: ConditionalVAE,
    params,
    h: float,
    key: jax.Array,
    x_table: np.ndarray,
    z_table: np.ndarray,
    n_samples: int = 100_000,
    temperature: float = 0.2,
    fd_step: float = 0.05,
) -> dict[str, np.ndarray]:
    r""":math:`\chi = d\mu/dh` (for :math:`\mu = (\mu_x, \mu_z)`) of the generative model at field ``h``.

    Common random numbers from ``key``: latent draws :math:`z_s` and Gumbel
    noise :math:`g_{s,i,a}`, :math:`s = 1..S`. With :math:`\ln\pi = ` decoder(:math:`z_s, h`)
    (for the autoregressive decoder :math:`\ln\pi_i` is evaluated at the already drawn
    relaxed or hard outcomes of sites :math:`< i`, see :func:`draw_onehot`):

    - ``gumbel``: :math:`\partial_h` of the relaxed estimator
      :math:`\mu(\mathrm{softmax}((\ln\pi + g)/\tau))` by automatic
      differentiation through the decoder (through all :math:`N` sequential passes
      for the autoregressive decoder);
    - ``fd_relaxed``: central difference of the same relaxed estimator,
      :math:`[\mu(h+\delta) - \mu(h-\delta)]/(2\delta)` (checks the derivative);
    - ``fd_hard``: central difference of the hard-sample (Gumbel-max, i.e.
      exact sampling) estimator with the same noise (the model's own :math:`\chi`,
      noisy because samples flip discontinuously with :math:`h`);
    - ``value_hard`` / ``value_relaxed``: :math:`\mu(h)` from hard / relaxed samples.
    """
    kz, kg = jax.random.split(key)
    z = jax.random.normal(kz, (n_samples, model.latent_dim), model.dtype)
    g = jax.random.gumbel(kg, (n_samples, model.n_sites, model.n_outcomes), model.dtype)
    tables = jnp.asarray(np.stack([x_table, z_table]), model.dtype)
    h = jnp.asarray(h, model.dtype)
    hp, hm = h + fd_step, h - fd_step

    def relaxed(hv):
        return relaxed_magnetizations(model, params, hv, z, g, tables, temperature)

    def hard(hv):
        return hard_magnetizations(model, params, hv, z, g, tables)

    out = {
        "gumbel": relaxed_susceptibility(model, params, h, z, g, tables, temperature),
        "fd_relaxed": (relaxed(hp) - relaxed(hm)) / (2 * fd_step),
        "fd_hard": (hard(hp) - hard(hm)) / (2 * fd_step),
        "value_hard": hard(h),
        "value_relaxed": relaxed(h),
    }
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}
