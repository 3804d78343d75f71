"""GAN baselines of the paper's comparison: Pix2Pix, CycleGAN and StarGAN on JAX + Flax.

An optional extra (``pip install 'mlrdist[gan]'``): nothing else in mlrdist imports this
package, so ``import mlrdist`` and ``import mlrdist.baselines`` never load JAX. The models
have the fit/predict API of the other baselines (:class:`~mlrdist._base.ImageRegressor`),
train in float32 on whatever device JAX finds (CPU or GPU), are seeded, and save their
generators without pickle (:meth:`GANRegressor.save`, :meth:`GANRegressor.load`).
"""

try:
    import flax  # noqa: F401
    import jax  # noqa: F401
    import optax  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in an environment without jax
    raise ImportError(
        f"the GAN baselines need JAX, Flax and Optax ({exc}); install them with "
        "pip install 'mlrdist[gan]'"
    ) from exc

from ._base import GANRegressor, levelled_off
from .cyclegan import CycleGAN
from .pix2pix import Pix2Pix
from .stargan import StarGAN

__all__ = ["CycleGAN", "GANRegressor", "Pix2Pix", "StarGAN", "levelled_off"]
