"""Generators and discriminators of the GAN baselines (Flax linen modules, NHWC, float32).

Depths adapt to the image size so that one definition serves 32 px smoke tests and
64-256 px experiments:

* :class:`UNetGenerator` -- pix2pix's U-Net (Isola et al. 2017): ``levels`` stride-2 4x4
  convolutions down to a 2 x 2 bottleneck, mirrored transposed convolutions up, skip
  connections, instance norm, dropout 0.5 on the decoder layers next to the bottleneck.
  Upsampling everywhere is a sub-pixel convolution (see ``_up``).
* :class:`ResnetGenerator` -- the residual generator of CycleGAN (Zhu et al. 2017) and
  StarGAN (Choi et al. 2018): 7x7 stem, two stride-2 downsamplings, ``n_blocks`` residual
  blocks, two upsamplings, 7x7 head; reflection padding; instance norm.
* :class:`PatchDiscriminator` -- the PatchGAN of pix2pix/CycleGAN (70 x 70 receptive field
  with ``n_layers = 3``): one real/fake logit per patch.
* :class:`StarDiscriminator` -- StarGAN's discriminator: a strided convolution stack with a
  patch real/fake head and an auxiliary domain-classification head.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

__all__ = [
    "PatchDiscriminator",
    "ResnetGenerator",
    "StarDiscriminator",
    "UNetGenerator",
    "image_levels",
]

_EPS = 1e-5  # instance-norm epsilon of the reference implementations


def image_levels(height: int, width: int, cap: int) -> int:
    """Number of 2x downsamplings an ``(height, width)`` image allows, at most ``cap``.

    Both sides must stay divisible by two at every level, and the coarsest grid keeps at
    least 2 x 2 cells (instance norm of a single cell is zero).

    Returns
    -------
    int
        ``min(cap, v, log2(min(height, width)) - 1)`` with ``2**v`` the largest power of two
        dividing both sides.
    """
    common = 0
    while height % 2 ** (common + 1) == 0 and width % 2 ** (common + 1) == 0:
        common += 1
    span = max(int(min(height, width)).bit_length() - 2, 0)
    return max(0, min(cap, common, span))


def _down(x: jnp.ndarray, features: int) -> jnp.ndarray:
    """4x4 stride-2 convolution (halves the grid), padding 1 as in pix2pix."""
    return nn.Conv(features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))(x)


def _up(x: jnp.ndarray, features: int, kernel: int) -> jnp.ndarray:
    """Stride-2 upsampling as a sub-pixel convolution (Shi et al. 2016).

    A ``kernel x kernel`` convolution to ``4 * features`` channels followed by depth-to-space.
    With ``kernel = 3`` this contains every 4x4 and 3x3 stride-2 transposed convolution of
    pix2pix/CycleGAN/StarGAN as a special case (each output phase sees a 2 x 2 or 3 x 3
    input neighbourhood), and XLA runs it about 5-10 times faster than a transposed
    convolution on CPU.
    """
    b, h, w, _ = x.shape
    y = nn.Conv(4 * features, (kernel, kernel), padding="SAME", kernel_init=_icnr)(x)
    y = y.reshape(b, h, w, 2, 2, features).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, 2 * h, 2 * w, features)


def _icnr(key, shape, dtype=jnp.float32) -> jnp.ndarray:
    """ICNR initialisation (Aitken et al. 2017) of a sub-pixel convolution: the four output
    phases start with the same weights, so the layer starts as a nearest-neighbour upsampling
    of one convolution, without the checkerboard a random start leaves in the images."""
    base = nn.initializers.lecun_normal()(key, (*shape[:-1], shape[-1] // 4), dtype)
    return jnp.tile(base, (1,) * (len(shape) - 1) + (4,))


def _reflect(x: jnp.ndarray, pad: int) -> jnp.ndarray:
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class UNetGenerator(nn.Module):
    """pix2pix U-Net: ``(B, H, W, C_in) -> (B, H, W, out_channels)`` in ``[-1, 1]``.

    Attributes
    ----------
    out_channels : int
    base : int
        Channels of the first layer; layer ``i`` has ``base * min(2**i, 8)``.
    levels : int
        Downsamplings (H and W divisible by ``2**levels``).
    dropout : float
        Dropout rate of up to three decoder layers next to the bottleneck (training only).
    """

    out_channels: int
    base: int = 32
    levels: int = 6
    dropout: float = 0.5

    def _width(self, i: int) -> int:
        return self.base * min(2**i, 8)

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        skips, h = [], x
        for i in range(self.levels):
            if i > 0:
                h = nn.leaky_relu(h, 0.2)
            h = _down(h, self._width(i))
            if 0 < i < self.levels - 1:  # no norm on the outermost and innermost layers
                h = nn.InstanceNorm(epsilon=_EPS, use_scale=False, use_bias=False)(h)
            skips.append(h)
        n_drop = min(3, max(self.levels - 3, 0))
        for i in reversed(range(self.levels)):
            if i < self.levels - 1:
                h = jnp.concatenate([h, skips[i]], axis=-1)
            h = nn.relu(h)
            out = self.out_channels if i == 0 else self._width(i - 1)
            h = _up(h, out, 3)
            if i == 0:
                break
            h = nn.InstanceNorm(epsilon=_EPS, use_scale=False, use_bias=False)(h)
            if self.levels - 1 - i < n_drop and self.dropout > 0:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return jnp.tanh(h)


class _ResBlock(nn.Module):
    features: int
    affine: bool

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        h = x
        for j in range(2):
            h = nn.Conv(self.features, (3, 3), padding="VALID")(_reflect(h, 1))
            h = nn.InstanceNorm(epsilon=_EPS, use_scale=self.affine, use_bias=self.affine)(h)
            if j == 0:
                h = nn.relu(h)
        return x + h


class ResnetGenerator(nn.Module):
    """CycleGAN/StarGAN residual generator: ``(B, H, W, C_in) -> (B, H, W, out_channels)``.

    Attributes
    ----------
    out_channels : int
    base : int
        Stem channels; the residual blocks run at ``4 * base`` on a quarter-size grid.
    n_blocks : int
        Residual blocks (CycleGAN: 6 at 128 px, 9 at 256 px; StarGAN: 6).
    affine : bool
        Learnt scale and shift in instance norm (StarGAN: yes, CycleGAN: no).
    """

    out_channels: int
    base: int = 32
    n_blocks: int = 6
    affine: bool = False

    def _norm(self, h: jnp.ndarray) -> jnp.ndarray:
        return nn.InstanceNorm(epsilon=_EPS, use_scale=self.affine, use_bias=self.affine)(h)

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        h = nn.relu(self._norm(nn.Conv(self.base, (7, 7), padding="VALID")(_reflect(x, 3))))
        for mult in (2, 4):
            h = nn.Conv(self.base * mult, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))(h)
            h = nn.relu(self._norm(h))
        for _ in range(self.n_blocks):
            h = _ResBlock(self.base * 4, self.affine)(h)
        for mult in (2, 1):
            h = _up(h, self.base * mult, 3)
            h = nn.relu(self._norm(h))
        h = nn.Conv(self.out_channels, (7, 7), padding="VALID")(_reflect(h, 3))
        return jnp.tanh(h)


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``(B, H, W, C) -> (B, H', W', 1)`` real/fake logits, one per patch.

    Attributes
    ----------
    base : int
    n_layers : int
        Stride-2 layers (3: the 70 x 70 PatchGAN).
    """

    base: int = 32
    n_layers: int = 3

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        h = nn.leaky_relu(_down(x, self.base), 0.2)
        for i in range(1, self.n_layers + 1):
            width = self.base * min(2**i, 8)
            if i < self.n_layers:
                h = _down(h, width)
            else:
                h = nn.Conv(width, (4, 4), padding=((1, 2), (1, 2)))(h)
            h = nn.InstanceNorm(epsilon=_EPS, use_scale=False, use_bias=False)(h)
            h = nn.leaky_relu(h, 0.2)
        return nn.Conv(1, (4, 4), padding=((1, 2), (1, 2)))(h)


class StarDiscriminator(nn.Module):
    """StarGAN discriminator: ``(B, H, W, C) -> (src (B, h, w, 1), cls (B, n_domains))``.

    Attributes
    ----------
    n_domains : int
    base : int
    n_layers : int
        Stride-2 layers (StarGAN: 6 at 128 px, down to 2 x 2); widths double up to
        ``16 * base``.
    """

    n_domains: int
    base: int = 32
    n_layers: int = 6

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        h = x
        for i in range(self.n_layers):
            h = nn.leaky_relu(_down(h, self.base * min(2**i, 16)), 0.01)
        src = nn.Conv(1, (3, 3), padding=((1, 1), (1, 1)), use_bias=False)(h)
        cls = nn.Conv(self.n_domains, h.shape[1:3], padding="VALID", use_bias=False)(h)
        return src, cls.reshape(x.shape[0], self.n_domains)
