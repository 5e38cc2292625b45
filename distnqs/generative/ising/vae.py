"""Variational autoencoders of Ising configurations (flax linen), their loss, training and sampling.

Data convention: a spin configuration ``s in {+1,-1}^(L x L)`` (row-major)
enters the network as the binary image ``x = (s + 1) / 2 in {0,1}``; the
decoder outputs logits ``l`` and the per-site probability of spin up
``p = sigmoid(l)``.

Model (Kingma & Welling 2014): encoder ``q(z|x) = N(mu(x), diag exp(logvar(x)))``,
prior ``p(z) = N(0, 1)``, decoder ``p(x|z) = prod_i Bernoulli(x_i; p_i(z))``.
The loss per configuration is the negative evidence lower bound

    -ELBO(x) = BCE(x, p(z)) + beta * KL(q(z|x) || p(z)),
    BCE      = -sum_i [x_i ln p_i + (1 - x_i) ln(1 - p_i)],
    KL       = (1/2) sum_k (mu_k^2 + exp(logvar_k) - 1 - logvar_k),

with ``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, 1)`` (reparametrization)
and ``beta = 1`` for the plain VAE. Training minimizes its batch mean with
Adam (optax).

Synthetic configurations: ``z ~ N(0, 1)``, ``p = sigmoid(decoder(z))`` and
either ``s_i = +1 if p_i > 1/2 else -1`` (threshold decoding) or
``s_i = +1 with probability p_i`` (Bernoulli decoding), as in Yevick (2022).

Architectures (defaults follow the paper, layer widths configurable):

- :class:`DenseVAE`: 64 -> 32 -> 8 -> 16 -> (mu, logvar) in R^latent -> 16 -> 8 -> 32 -> 64,
  relu hidden layers, linear latent heads, sigmoid output.
- :class:`ConvVAE`: 16 filters 3x3 stride 2 'SAME' (8x8x1 -> 4x4x16, relu),
  flatten, linear heads (mu, logvar); decoder dense 16 (relu) reshaped to 4x4,
  transposed convolution 1 filter 3x3 stride 2 'SAME' -> 8x8 logits, sigmoid.
  (Optional wider variants: ``encoder_dense`` hidden units before the heads,
  ``decoder_channels`` channels in the 4x4 map.)

All randomness comes from explicit ``jax.random`` keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "DenseVAE",
    "ConvVAE",
    "make_model",
    "spins_to_binary",
    "binary_to_spins",
    "vae_loss_terms",
    "kl_divergence",
    "bernoulli_cross_entropy",
    "init_params",
    "train_vae",
    "TrainResult",
    "evaluate_elbo",
    "encode",
    "decode_probabilities",
    "generate_probabilities",
    "decode_threshold",
    "decode_bernoulli",
]


def spins_to_binary(spins) -> jax.Array:
    """``x = (s + 1) / 2``: +1/-1 spins -> 1/0 (float32)."""
    return (jnp.asarray(spins, jnp.float32) + 1.0) * 0.5


def binary_to_spins(bits) -> jax.Array:
    """``s = 2 x - 1``: 1/0 (or bool) -> +1/-1 (int8)."""
    return jnp.where(jnp.asarray(bits) > 0, 1, -1).astype(jnp.int8)


class DenseVAE(nn.Module):
    """Fully connected VAE on flattened ``L x L`` images (see module docstring)."""

    L: int = 8
    latent_dim: int = 2
    encoder_widths: Sequence[int] = (32, 8, 16)
    decoder_widths: Sequence[int] = (16, 8, 32)

    def setup(self):
        self.enc = [nn.Dense(w, name=f"enc_{i}") for i, w in enumerate(self.encoder_widths)]
        self.mu_head = nn.Dense(self.latent_dim, name="mu")
        self.logvar_head = nn.Dense(self.latent_dim, name="logvar")
        self.dec = [nn.Dense(w, name=f"dec_{i}") for i, w in enumerate(self.decoder_widths)]
        self.out = nn.Dense(self.L * self.L, name="out")

    def encode(self, x):
        """``x (B, L, L)`` in [0,1] -> ``(mu, logvar)``, each ``(B, latent_dim)``."""
        h = x.reshape(x.shape[0], -1)
        for layer in self.enc:
            h = nn.relu(layer(h))
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z):
        """``z (B, latent_dim)`` -> logits ``(B, L, L)``."""
        h = z
        for layer in self.dec:
            h = nn.relu(layer(h))
        return self.out(h).reshape(z.shape[0], self.L, self.L)

    def __call__(self, x, key):
        mu, logvar = self.encode(x)
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)
        return self.decode(z), mu, logvar


class ConvVAE(nn.Module):
    """Convolutional VAE (see module docstring); needs even ``L``.

    Encoder: ``Conv(filters, 3x3, stride 2, SAME)`` + relu (``L x L x 1 -> L/2 x L/2 x filters``),
    flatten, optional ``Dense(encoder_dense)`` + relu (0: none), linear heads ``mu``, ``logvar``.
    Decoder: ``Dense((L/2)^2 * decoder_channels)`` + relu reshaped to ``L/2 x L/2 x decoder_channels``
    (the paper's "dense 16 -> 4 x 4" for ``L = 8``, ``decoder_channels = 1``), then
    ``ConvTranspose(1, 3x3, stride 2, SAME)`` -> ``L x L`` logits (sigmoid gives ``p``).
    """

    L: int = 8
    latent_dim: int = 2
    filters: int = 16
    encoder_dense: int = 0
    decoder_channels: int = 1

    def setup(self):
        self.conv = nn.Conv(self.filters, (3, 3), strides=(2, 2), padding="SAME", name="conv")
        self.enc_dense = nn.Dense(self.encoder_dense, name="enc_dense") if self.encoder_dense > 0 else None
        self.mu_head = nn.Dense(self.latent_dim, name="mu")
        self.logvar_head = nn.Dense(self.latent_dim, name="logvar")
        h = self.L // 2
        self.dec_dense = nn.Dense(h * h * self.decoder_channels, name="dec_dense")
        self.deconv = nn.ConvTranspose(1, (3, 3), strides=(2, 2), padding="SAME", name="deconv")

    def encode(self, x):
        """``x (B, L, L)`` in [0,1] -> ``(mu, logvar)``, each ``(B, latent_dim)``."""
        h = nn.relu(self.conv(x[..., None]))
        h = h.reshape(h.shape[0], -1)
        if self.enc_dense is not None:
            h = nn.relu(self.enc_dense(h))
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z):
        """``z (B, latent_dim)`` -> logits ``(B, L, L)``."""
        h = self.L // 2
        y = nn.relu(self.dec_dense(z)).reshape(z.shape[0], h, h, self.decoder_channels)
        return self.deconv(y)[..., 0]

    def __call__(self, x, key):
        mu, logvar = self.encode(x)
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)
        return self.decode(z), mu, logvar


def make_model(kind: str, L: int, latent_dim: int, **arch) -> nn.Module:
    """``"dense"`` -> :class:`DenseVAE`, ``"conv"`` -> :class:`ConvVAE` with the given architecture keywords."""
    if kind == "dense":
        enc = tuple(int(w) for w in arch.get("encoder", (32, 8, 16)))
        dec = tuple(int(w) for w in arch.get("decoder", (16, 8, 32)))
        return DenseVAE(L=L, latent_dim=latent_dim, encoder_widths=enc, decoder_widths=dec)
    if kind == "conv":
        if L % 2:
            raise ValueError(f"the convolutional VAE needs an even L, got {L}")
        return ConvVAE(L=L, latent_dim=latent_dim, filters=int(arch.get("filters", 16)),
                       encoder_dense=int(arch.get("encoder_dense", 0)),
                       decoder_channels=int(arch.get("decoder_channels", 1)))
    raise ValueError(f"unknown VAE kind {kind!r} (choose dense or conv)")


# ----------------------------------------------------------------------------
# loss
# ----------------------------------------------------------------------------

def bernoulli_cross_entropy(logits, x):
    """``BCE = -sum_i [x_i ln sigmoid(l_i) + (1-x_i) ln(1 - sigmoid(l_i))]`` per configuration (sum over the last two axes)."""
    return optax.sigmoid_binary_cross_entropy(logits, x).sum(axis=(-2, -1))


def kl_divergence(mu, logvar):
    """``KL(N(mu, e^logvar) || N(0,1)) = (1/2) sum_k (mu_k^2 + e^logvar_k - 1 - logvar_k)`` per configuration."""
    return 0.5 * jnp.sum(mu**2 + jnp.exp(logvar) - 1.0 - logvar, axis=-1)


def vae_loss_terms(params, model: nn.Module, x, key, beta: float = 1.0):
    """Batch means ``(loss, recon, kl)`` with ``loss = mean(BCE + beta * KL)`` (one reparametrized sample per configuration)."""
    logits, mu, logvar = model.apply(params, x, key)
    recon = bernoulli_cross_entropy(logits, x)
    kl = kl_divergence(mu, logvar)
    return jnp.mean(recon + beta * kl), jnp.mean(recon), jnp.mean(kl)


def _numpy_rng(key) -> np.random.Generator:
    """A numpy generator seeded deterministically by the words of a jax PRNG key (raw or typed)."""
    if jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, dtype=np.uint32).ravel().tolist())


def init_params(model: nn.Module, key):
    """Initial parameters with flax's default distributions, drawn on the host (no XLA compilation).

    Kernels (``Dense``, ``Conv``, ``ConvTranspose``): LeCun normal, i.e. a normal
    truncated to ``[-2, 2]`` standard deviations with standard deviation
    ``sqrt(1 / fan_in) / 0.87962566`` (``fan_in`` = product of all kernel axes but the
    last), exactly flax's ``lecun_normal()``; biases zero. float32. The values
    are a deterministic function of ``key``.
    """
    x = jnp.zeros((1, model.L, model.L), jnp.float32)
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0)}, x, jax.random.PRNGKey(0)))
    rng = _numpy_rng(key)

    def draw(path, leaf):
        name = getattr(path[-1], "key", str(path[-1]))
        if name != "kernel":
            return jnp.zeros(leaf.shape, leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1]))
        v = rng.standard_normal(leaf.shape)
        bad = np.abs(v) > 2.0
        while bad.any():
            v[bad] = rng.standard_normal(int(bad.sum()))
            bad = np.abs(v) > 2.0
        return jnp.asarray(v * (np.sqrt(1.0 / fan_in) / 0.87962566103423978), leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


# ----------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _epoch_fn(model: nn.Module, batch_size: int, beta: float):
    """Jitted epoch ``(params, opt_state, data, key) -> (params, opt_state, (loss, recon, kl) per batch)``."""
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)

    def loss_fn(params, x, key):
        loss, recon, kl = vae_loss_terms(params, model, x, key, beta)
        return loss, (recon, kl)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    @jax.jit
    def epoch(params, opt_state, data, key):
        k_perm, k_steps = jax.random.split(key)
        n_batches = data.shape[0] // batch_size
        perm = jax.random.permutation(k_perm, data.shape[0])[: n_batches * batch_size]
        batches = data[perm].reshape(n_batches, batch_size, *data.shape[1:])
        keys = jax.random.split(k_steps, n_batches)

        def step(carry, inp):
            p, s = carry
            b, k = inp
            (loss, (recon, kl)), g = grad_fn(p, spins_to_binary(b), k)
            updates, s = opt.update(g, s, p)
            return (optax.apply_updates(p, updates), s), (loss, recon, kl)

        (params, opt_state), metrics = jax.lax.scan(step, (params, opt_state), (batches, keys))
        return params, opt_state, metrics

    return opt, epoch


@lru_cache(maxsize=None)
def _eval_fn(model: nn.Module, beta: float):
    # one key per chunk: model.__call__ draws an independent eps for every configuration
    return jax.jit(lambda params, x, key: vae_loss_terms(params, model, x, key, beta))


def evaluate_elbo(params, model: nn.Module, spins, key, beta: float = 1.0, chunk: int = 20000) -> dict:
    """Mean ``-ELBO = BCE + beta KL``, ``BCE`` and ``KL`` per configuration over ``spins`` (one z-sample each)."""
    ev = _eval_fn(model, float(beta))
    spins = np.asarray(spins)
    tot = np.zeros(3)
    for i, start in enumerate(range(0, len(spins), chunk)):
        part = spins[start:start + chunk]
        vals = ev(params, spins_to_binary(part), jax.random.fold_in(key, i))
        tot += np.asarray([float(v) for v in vals]) * len(part)
    tot /= len(spins)
    return {"loss": float(tot[0]), "recon": float(tot[1]), "kl": float(tot[2])}


@dataclass
class TrainResult:
    """Trained parameters and the per-epoch mean training metrics; ``initial``/``final``: :func:`evaluate_elbo` on an evaluation subset."""

    params: dict
    history: list = field(default_factory=list)
    initial: dict = field(default_factory=dict)
    final: dict = field(default_factory=dict)
    seconds: float = 0.0


def train_vae(model: nn.Module, spins, key, *, epochs: int, batch_size: int, learning_rate: float,
              beta: float = 1.0, n_eval: int = 10000,
              progress: Callable[[int, int, float], None] | None = None) -> TrainResult:
    """Minimize ``mean(BCE + beta KL)`` over ``spins (n, L, L)`` (+1/-1) with Adam, ``epochs`` shuffled passes.

    Each epoch draws a fresh permutation and drops the last incomplete batch.
    ``progress(epoch, epochs, mean_loss)`` is called after every epoch.
    """
    spins = np.asarray(spins, dtype=np.int8)
    if batch_size > len(spins):
        raise ValueError(f"batch_size {batch_size} exceeds the number of training configurations {len(spins)}")
    t0 = time.perf_counter()
    k_init, k_train, k_eval = jax.random.split(key, 3)
    params = init_params(model, k_init)
    opt, epoch = _epoch_fn(model, int(batch_size), float(beta))
    opt_state = opt.init(params)
    opt_state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, opt_state.hyperparams["learning_rate"].dtype)
    eval_set = spins[: min(n_eval, len(spins))]
    result = TrainResult(params=params, initial=evaluate_elbo(params, model, eval_set, k_eval, beta))
    data = jnp.asarray(spins)
    for ep in range(epochs):
        params, opt_state, metrics = epoch(params, opt_state, data, jax.random.fold_in(k_train, ep))
        loss, recon, kl = (float(np.mean(np.asarray(v))) for v in metrics)
        result.history.append({"epoch": ep + 1, "loss": loss, "recon": recon, "kl": kl})
        if progress is not None:
            progress(ep + 1, epochs, loss)
    result.params = params
    result.final = evaluate_elbo(params, model, eval_set, k_eval, beta)
    result.seconds = time.perf_counter() - t0
    return result


# ----------------------------------------------------------------------------
# encoding, generation, decoding to spins
# ----------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _encode_fn(model):
    return jax.jit(lambda params, x: model.apply(params, x, method=model.encode))


@lru_cache(maxsize=None)
def _decode_fn(model):
    return jax.jit(lambda params, z: jax.nn.sigmoid(model.apply(params, z, method=model.decode)))


def encode(params, model: nn.Module, spins, chunk: int = 50000) -> tuple[np.ndarray, np.ndarray]:
    """Encoder outputs ``(mu, logvar)`` (numpy, ``(n, latent_dim)`` each) for +1/-1 configurations."""
    f = _encode_fn(model)
    spins = np.asarray(spins)
    out = [f(params, spins_to_binary(spins[i:i + chunk])) for i in range(0, len(spins), chunk)]
    return (np.concatenate([np.asarray(o[0]) for o in out]), np.concatenate([np.asarray(o[1]) for o in out]))


def decode_probabilities(params, model: nn.Module, z) -> np.ndarray:
    """Decoder probabilities ``p = sigmoid(decoder(z))`` of spin up, ``(n, L, L)`` float32."""
    return np.asarray(_decode_fn(model)(params, jnp.asarray(z, jnp.float32)))


def generate_probabilities(params, model: nn.Module, key, n: int, chunk: int = 50000) -> np.ndarray:
    """Decode ``n`` prior samples ``z ~ N(0, 1)``: returns ``p (n, L, L)`` (float32)."""
    out = []
    for i, start in enumerate(range(0, n, chunk)):
        m = min(chunk, n - start)
        z = jax.random.normal(jax.random.fold_in(key, i), (m, model.latent_dim), jnp.float32)
        out.append(decode_probabilities(params, model, z))
    return np.concatenate(out) if out else np.zeros((0, model.L, model.L), np.float32)


def decode_threshold(probs) -> np.ndarray:
    """Threshold decoding ``s_i = +1 if p_i > 1/2 else -1`` (int8)."""
    return np.where(np.asarray(probs) > 0.5, 1, -1).astype(np.int8)


def decode_bernoulli(probs, key) -> np.ndarray:
    """Bernoulli decoding: ``s_i = +1`` with probability ``p_i``, else ``-1``, independently per site (int8)."""
    p = jnp.asarray(probs, jnp.float32)
    u = jax.random.uniform(key, p.shape, jnp.float32)
    return np.asarray(jnp.where(u < p, 1, -1).astype(jnp.int8))
