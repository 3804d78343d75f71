"""Pix2Pix (Isola et al., CVPR 2017): conditional GAN on paired images."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ._base import GANRegressor, adam, adam_step, bce, check_float, init_params
from ._nets import PatchDiscriminator, UNetGenerator

__all__ = ["Pix2Pix"]


class Pix2Pix(GANRegressor):
    """pix2pix: U-Net generator, conditional PatchGAN discriminator, L1 + adversarial loss.

    The generator maps a source face to the target expression; the discriminator sees
    ``(source, image)`` pairs. Loss of the generator ``GAN + lambda_l1 * L1`` on images in
    ``[-1, 1]`` (vanilla, cross-entropy GAN loss); the discriminator's objective is halved.
    Generator and discriminator take simultaneous Adam steps on each batch. One model is
    trained per target expression.

    The U-Net has ``levels = log2(size) - 1`` downsamplings (2 x 2 bottleneck): 6 at 128 px,
    7 at 256 px, 4 at 32 px. Dropout (0.5) regularises up to three decoder layers during
    training; prediction is deterministic (no dropout).

    Parameters
    ----------
    epochs : int, default 200
        Passes over the training pairs; the learning rate is constant for the first half
        and decays linearly to 0 over the second half (as in the paper's code).
    batch_size : int, default 4
        Pairs per step (instance norm is per image, so it does not change the model).
    learning_rate : float, default 2e-4
    beta1 : float, default 0.5
        Adam's first-moment decay (``beta2 = 0.999``).
    lambda_l1 : float, default 100
    base_channels : int, default 32
        Width of the first layer of both networks (the paper: 64).
    dropout : float, default 0.5
    validation_fraction : float, default 0
        Share of the pairs held out to record ``history_[...]["val_l1"]`` per epoch.
    seed : int, default 0
    scaling : {"unit", "minmax"}
    progress : bool, default False
        Show a tqdm bar over epochs with the latest losses.

    Attributes
    ----------
    generators_ : dict of target name -> Flax variables of the U-Net
    history_ : dict of target name -> dict of str -> list of float
        ``g_adv``, ``l1`` (mean absolute error on [0, 1] images of the training batches),
        ``d``, ``seconds`` and, if validating, ``val_l1`` per epoch.
    n_parameters_ : int
        U-Net parameters (all targets).
    """

    _loss_names = ("g_adv", "l1", "d")

    def __init__(
        self, epochs: int = 200, *, batch_size: int = 4, learning_rate: float = 2e-4, beta1: float = 0.5,
        lambda_l1: float = 100.0, base_channels: int = 32, dropout: float = 0.5,
        validation_fraction: float = 0.0, seed: int = 0, scaling: str = "unit", progress: bool = False,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.beta1 = beta1
        self.lambda_l1 = lambda_l1
        self.base_channels = base_channels
        self.dropout = dropout
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.scaling = scaling
        self.progress = progress

    def _validate_params(self) -> None:
        super()._validate_params()
        check_float(self.dropout, "dropout", 0.0, 1.0, closed=True)

    def _build(self, image_shape: tuple[int, ...], n_targets: int) -> None:
        h, w, c = image_shape
        levels = self._levels(image_shape, 8, 3)
        base = int(self.base_channels)
        self._nets = {"G": UNetGenerator(c, base, levels, float(self.dropout)),
                      "D": PatchDiscriminator(base, min(3, levels - 1))}
        self._g_in = (h, w, c)

    def _init(self, key: jax.Array, image_shape: tuple[int, ...], n_targets: int) -> dict:
        h, w, c = image_shape
        kg, kd = jax.random.split(key)
        params = {"G": init_params(self._nets["G"], kg, (h, w, c)),
                  "D": init_params(self._nets["D"], kd, (h, w, 2 * c))}
        tx = adam(float(self.beta1))
        return {"params": params, "opt": {k: tx.init(v) for k, v in params.items()}}

    def _step_fn(self) -> Callable:
        return _step(self._nets["G"], self._nets["D"], float(self.lambda_l1), float(self.beta1))


@functools.lru_cache(maxsize=16)
def _step(G: UNetGenerator, D: PatchDiscriminator, lambda_l1: float, beta1: float) -> Callable:
    tx = adam(beta1)

    def step(state, data, idx, key, lr):
        X, Y = data
        x, y = X[idx], Y[0][idx]
        p, o = state["params"], state["opt"]

        def g_loss(gp):
            fake = G.apply(gp, x, train=True, rngs={"dropout": key})
            adv = bce(D.apply(p["D"], jnp.concatenate([x, fake], -1)), True)
            l1 = jnp.mean(jnp.abs(fake - y))
            return adv + lambda_l1 * l1, (fake, adv, l1)

        (_, (fake, adv, l1)), g_grads = jax.value_and_grad(g_loss, has_aux=True)(p["G"])
        fake = jax.lax.stop_gradient(fake)

        def d_loss(dp):
            real = bce(D.apply(dp, jnp.concatenate([x, y], -1)), True)
            return 0.5 * (real + bce(D.apply(dp, jnp.concatenate([x, fake], -1)), False))

        d, d_grads = jax.value_and_grad(d_loss)(p["D"])
        g_new, g_opt = adam_step(tx, g_grads, o["G"], p["G"], lr)
        d_new, d_opt = adam_step(tx, d_grads, o["D"], p["D"], lr)
        state = {"params": {"G": g_new, "D": d_new}, "opt": {"G": g_opt, "D": d_opt}}
        return state, jnp.stack([adv, l1 / 2.0, d])

    return jax.jit(step)
