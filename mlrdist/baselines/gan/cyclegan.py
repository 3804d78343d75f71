"""CycleGAN (Zhu et al., ICCV 2017): unpaired translation with cycle consistency."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._base import GANRegressor, adam, adam_step, init_params, lsgan
from ._nets import PatchDiscriminator, ResnetGenerator

__all__ = ["CycleGAN", "resnet_blocks"]


def resnet_blocks(image_shape: tuple[int, ...], n_blocks: int | None) -> int:
    """Residual blocks of the generator: CycleGAN's 9 at 256 px and above, 6 at 128 px;
    4 at 64 px and 2 below (fewer blocks for the smaller receptive field needed)."""
    if n_blocks is not None:
        return int(n_blocks)
    side = min(image_shape[:2])
    return 9 if side >= 256 else 6 if side >= 128 else 4 if side >= 64 else 2


class CycleGAN(GANRegressor):
    """CycleGAN: two residual generators and two PatchGAN discriminators, trained unpaired.

    The pairing of the training data is ignored: every step draws its source batch and
    its target batch from independent shuffles. ``G`` maps source to target, ``F`` back;
    generator loss ``LSGAN(D_t(G(a))) + LSGAN(D_s(F(b))) + lambda_cycle (|F(G(a)) - a| +
    |G(F(b)) - b|) + lambda_cycle * lambda_identity (|G(b) - b| + |F(a) - a|)``;
    discriminators: least-squares real/fake loss, halved. One model per target expression;
    ``predict`` runs ``G``. The image-history buffer of the paper (50 past fakes shown to
    the discriminators) is not used.

    Parameters
    ----------
    epochs : int, default 200
        Passes over the training sources (each paired with a shuffled target batch);
        constant learning rate for the first half, linear decay to 0 over the second.
    batch_size : int, default 4
    learning_rate : float, default 2e-4
    beta1 : float, default 0.5
    lambda_cycle : float, default 10
    lambda_identity : float, default 0.5
        Relative to ``lambda_cycle`` (the paper's convention); 0 disables it.
    base_channels : int, default 32
        Stem width of generators and discriminators (the paper: 64).
    n_blocks : int, optional
        Residual blocks; default from the image size (:func:`resnet_blocks`).
    validation_fraction, seed, scaling, progress
        As in :class:`Pix2Pix`.

    Attributes
    ----------
    generators_ : dict of target name -> Flax variables of ``G``
    history_ : dict of target name -> dict of str -> list of float
        ``g_adv``, ``cycle``, ``identity`` (mean absolute errors on [0, 1] images), ``d``,
        ``seconds`` and, if validating, ``val_l1`` per epoch.
    n_parameters_ : int
        Parameters of ``G`` (all targets); ``F`` is needed only for training.
    """

    _loss_names = ("g_adv", "cycle", "identity", "d")

    def __init__(
        self, epochs: int = 200, *, batch_size: int = 4, learning_rate: float = 2e-4, beta1: float = 0.5,
        lambda_cycle: float = 10.0, lambda_identity: float = 0.5, base_channels: int = 32,
        n_blocks: int | None = None, validation_fraction: float = 0.0, seed: int = 0, scaling: str = "unit",
        progress: bool = False,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.beta1 = beta1
        self.lambda_cycle = lambda_cycle
        self.lambda_identity = lambda_identity
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

    def _build(self, image_shape: tuple[int, ...], n_targets: int) -> None:
        h, w, c = image_shape
        levels = self._levels(image_shape, 8, 3)
        base = int(self.base_channels)
        gen = ResnetGenerator(c, base, resnet_blocks(image_shape, self.n_blocks), affine=False)
        disc = PatchDiscriminator(base, min(3, levels - 1))
        self._nets = {"G": gen, "D": disc}
        self._g_in = (h, w, c)

    def _init(self, key: jax.Array, image_shape: tuple[int, ...], n_targets: int) -> dict:
        keys = jax.random.split(key, 4)
        gen, disc = self._nets["G"], self._nets["D"]
        g = {name: init_params(gen, k, image_shape) for name, k in zip(("G", "F"), keys[:2], strict=True)}
        d = {name: init_params(disc, k, image_shape) for name, k in zip(("D_s", "D_t"), keys[2:], strict=True)}
        tx = adam(float(self.beta1))
        return {"params": {**g, **d}, "opt": {"gen": tx.init(g), "disc": tx.init(d)}}

    def _batches(self, rng: np.random.Generator, n: int, n_targets: int) -> list[np.ndarray]:
        """Per step a ``(2, batch)`` index array: sources, then independently drawn targets."""
        bs = int(self.batch_size)
        steps = max(1, math.ceil(n / bs))
        src = np.resize(rng.permutation(n), steps * bs).reshape(steps, bs)
        tgt = np.resize(rng.permutation(n), steps * bs).reshape(steps, bs)
        return list(np.stack([src, tgt], axis=1).astype(np.int32))

    def _step_fn(self) -> Callable:
        return _step(self._nets["G"], self._nets["D"], float(self.lambda_cycle),
                     float(self.lambda_identity), float(self.beta1))


@functools.lru_cache(maxsize=16)
def _step(G: ResnetGenerator, D: PatchDiscriminator, lambda_cycle: float, lambda_identity: float,
          beta1: float) -> Callable:
    tx = adam(beta1)

    def l1(a, b):
        return jnp.mean(jnp.abs(a - b))

    def step(state, data, idx, key, lr):
        X, Y = data
        a, b = X[idx[0]], Y[0][idx[1]]
        p, o = state["params"], state["opt"]

        def g_loss(g):
            fake_b, fake_a = G.apply(g["G"], a), G.apply(g["F"], b)
            adv = lsgan(D.apply(p["D_t"], fake_b), True) + lsgan(D.apply(p["D_s"], fake_a), True)
            cyc = l1(G.apply(g["F"], fake_b), a) + l1(G.apply(g["G"], fake_a), b)
            idt = jnp.float32(0.0)
            if lambda_identity > 0:
                idt = l1(G.apply(g["G"], b), b) + l1(G.apply(g["F"], a), a)
            loss = adv + lambda_cycle * cyc + lambda_cycle * lambda_identity * idt
            return loss, (fake_a, fake_b, adv, cyc, idt)

        gen = {"G": p["G"], "F": p["F"]}
        (_, (fake_a, fake_b, adv, cyc, idt)), g_grads = jax.value_and_grad(g_loss, has_aux=True)(gen)
        fake_a, fake_b = jax.lax.stop_gradient(fake_a), jax.lax.stop_gradient(fake_b)

        def d_loss(d):
            loss_t = lsgan(D.apply(d["D_t"], b), True) + lsgan(D.apply(d["D_t"], fake_b), False)
            loss_s = lsgan(D.apply(d["D_s"], a), True) + lsgan(D.apply(d["D_s"], fake_a), False)
            return 0.5 * (loss_t + loss_s)

        disc = {"D_s": p["D_s"], "D_t": p["D_t"]}
        dl, d_grads = jax.value_and_grad(d_loss)(disc)
        gen, g_opt = adam_step(tx, g_grads, o["gen"], gen, lr)
        disc, d_opt = adam_step(tx, d_grads, o["disc"], disc, lr)
        state = {"params": {**gen, **disc}, "opt": {"gen": g_opt, "disc": d_opt}}
        return state, jnp.stack([adv, cyc / 2.0, idt / 2.0, dl])

    return jax.jit(step)
