"""StarGAN (Choi et al., CVPR 2018): one generator for several target expressions."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._base import GANRegressor, adam, adam_step, init_params, lsgan
from ._nets import ResnetGenerator, StarDiscriminator, image_levels

__all__ = ["StarGAN"]


def _with_labels(x: jnp.ndarray, labels: jnp.ndarray, n_domains: int) -> jnp.ndarray:
    """``x (B, H, W, C)`` and domain indices ``(B,)`` -> ``(B, H, W, C + n_domains)``: the
    one-hot label as constant channels."""
    onehot = jax.nn.one_hot(labels, n_domains, dtype=x.dtype)[:, None, None, :]
    return jnp.concatenate([x, jnp.broadcast_to(onehot, (*x.shape[:3], n_domains))], axis=-1)


class StarGAN(GANRegressor):
    """StarGAN: one residual generator conditioned on a target-domain label, one
    discriminator with a real/fake head and an auxiliary domain classifier.

    Domains are the source expression (domain 0) and the ``m`` target expressions
    (domains ``1..m``): with one target (London neutral -> smiling) there are two. Every
    training image, source or target, is a sample of its domain; the pairing is not used.
    Each step translates a batch to random *other* domains; generator loss
    ``LSGAN(D_src(G(x, c))) + lambda_cls CE(D_cls(G(x, c)), c) + lambda_rec |G(G(x, c),
    c_x) - x|``; discriminator: least-squares real/fake + ``lambda_cls`` times the
    classification loss of real images. The paper's WGAN-GP loss with five critic updates
    per generator update is replaced by the least-squares loss with one update of each
    (a sixth of the cost per generator step, and a gradient penalty needs second
    derivatives); everything else follows the paper (6 residual blocks at 128 px, instance
    norm with learnt affine, a 2 x 2 patch output, label channels concatenated to the
    input). ``predict`` returns every target from one model.

    Parameters
    ----------
    epochs : int, default 200
        Passes over all training images of all domains (``n (m + 1)`` images per epoch).
    batch_size : int, default 4
    learning_rate : float, default 2e-4
        StarGAN's 1e-4 is for WGAN-GP; the least-squares loss uses the pix2pix/CycleGAN rate.
    beta1 : float, default 0.5
    lambda_cls : float, default 1
    lambda_rec : float, default 10
    base_channels : int, default 32
        Generator stem and first discriminator layer (the paper: 64).
    n_blocks : int, optional
        Residual blocks; default from the image size (6 at 128 px).
    validation_fraction, seed, scaling, progress
        As in :class:`Pix2Pix`.

    Attributes
    ----------
    generators_ : dict ``{"all": Flax variables of the generator}``
    domains_ : tuple of str
        ``("source", *targets_)``; the label index of each domain.
    history_ : dict ``{"all": dict of str -> list of float}``
        ``g_adv``, ``g_cls``, ``rec`` (mean absolute error on [0, 1] images), ``d``,
        ``d_cls``, ``seconds`` and, if validating, ``val_l1`` (mean over targets) per epoch.
    n_parameters_ : int
    """

    _loss_names = ("g_adv", "g_cls", "rec", "d", "d_cls")
    _single_model = True

    def __init__(
        self, epochs: int = 200, *, batch_size: int = 4, learning_rate: float = 2e-4, beta1: float = 0.5,
        lambda_cls: float = 1.0, lambda_rec: float = 10.0, base_channels: int = 32, n_blocks: int | None = None,
        validation_fraction: float = 0.0, seed: int = 0, scaling: str = "unit", progress: bool = False,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.beta1 = beta1
        self.lambda_cls = lambda_cls
        self.lambda_rec = lambda_rec
        self.base_channels = base_channels
        self.n_blocks = n_blocks
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.scaling = scaling
        self.progress = progress

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.n_blocks is not None:
            from ...preprocess import check_positive_int

            check_positive_int(self.n_blocks, "n_blocks", " or None")

    @property
    def domains_(self) -> tuple[str, ...]:
        return ("source", *self.targets_)

    def _build(self, image_shape: tuple[int, ...], n_targets: int) -> None:
        from .cyclegan import resnet_blocks

        h, w, c = image_shape
        self._levels(image_shape, 8, 3)
        n_dom = n_targets + 1
        base = int(self.base_channels)
        self._nets = {"G": ResnetGenerator(c, base, resnet_blocks(image_shape, self.n_blocks), affine=True),
                      "D": StarDiscriminator(n_dom, base, image_levels(h, w, 6))}
        self._g_in = (h, w, c + n_dom)
        self._n_domains = n_dom

    def _init(self, key: jax.Array, image_shape: tuple[int, ...], n_targets: int) -> dict:
        kg, kd = jax.random.split(key)
        params = {"G": init_params(self._nets["G"], kg, self._g_in),
                  "D": init_params(self._nets["D"], kd, image_shape)}
        tx = adam(float(self.beta1))
        return {"params": params, "opt": {k: tx.init(v) for k, v in params.items()}}

    def _device_data(self, X: np.ndarray, Y: np.ndarray) -> tuple:
        """All training images by domain: ``(m + 1, n, H, W, C)``."""
        return (jnp.asarray(np.concatenate([X[None], Y])),)

    def _batches(self, rng: np.random.Generator, n: int, n_targets: int) -> list[np.ndarray]:
        """Per step a ``(2, batch)`` array of (domain, sample) indices; an epoch visits every
        image of every domain once."""
        bs = int(self.batch_size)
        total = n * (n_targets + 1)
        steps = max(1, math.ceil(total / bs))
        flat = np.resize(rng.permutation(total), steps * bs).reshape(steps, bs)
        return list(np.stack([flat // n, flat % n], axis=1).astype(np.int32))

    def _generator_input(self, x: jnp.ndarray, j: int) -> jnp.ndarray:
        labels = jnp.full((x.shape[0],), j + 1, jnp.int32)
        return _with_labels(x, labels, self._n_domains)

    def _step_fn(self) -> Callable:
        return _step(self._nets["G"], self._nets["D"], self._n_domains, float(self.lambda_cls),
                     float(self.lambda_rec), float(self.beta1))


@functools.lru_cache(maxsize=16)
def _step(G: ResnetGenerator, D: StarDiscriminator, n_dom: int, lambda_cls: float, lambda_rec: float,
          beta1: float) -> Callable:
    tx = adam(beta1)

    def ce(logits, labels):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    def step(state, data, idx, key, lr):
        (pool,) = data
        c_org = idx[0]
        x = pool[idx[0], idx[1]]
        c_trg = (c_org + jax.random.randint(key, c_org.shape, 1, n_dom)) % n_dom
        p, o = state["params"], state["opt"]

        def g_loss(gp):
            fake = G.apply(gp, _with_labels(x, c_trg, n_dom))
            src, cls = D.apply(p["D"], fake)
            adv, g_cls = lsgan(src, True), ce(cls, c_trg)
            rec = jnp.mean(jnp.abs(G.apply(gp, _with_labels(fake, c_org, n_dom)) - x))
            return adv + lambda_cls * g_cls + lambda_rec * rec, (fake, adv, g_cls, rec)

        (_, (fake, adv, g_cls, rec)), g_grads = jax.value_and_grad(g_loss, has_aux=True)(p["G"])
        fake = jax.lax.stop_gradient(fake)

        def d_loss(dp):
            src_real, cls_real = D.apply(dp, x)
            src_fake, _ = D.apply(dp, fake)
            d_cls = ce(cls_real, c_org)
            return lsgan(src_real, True) + lsgan(src_fake, False) + lambda_cls * d_cls, d_cls

        (dl, d_cls), d_grads = jax.value_and_grad(d_loss, has_aux=True)(p["D"])
        g_new, g_opt = adam_step(tx, g_grads, o["G"], p["G"], lr)
        d_new, d_opt = adam_step(tx, d_grads, o["D"], p["D"], lr)
        state = {"params": {"G": g_new, "D": d_new}, "opt": {"G": g_opt, "D": d_opt}}
        return state, jnp.stack([adv, g_cls, rec / 2.0, dl, d_cls])

    return jax.jit(step)
