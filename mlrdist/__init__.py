"""mlrdist: masked linear regression for facial expression synthesis, at scale.

Khan, Akram, Mahmood, Ashraf, Murtaza, "Masked Linear Regression for Learning Local
Receptive Fields for Facial Expression Synthesis", IJCV 128(5), 2020.
"""

from importlib.metadata import PackageNotFoundError, version

from .baselines.l2 import FullRidge
from .estimator import MaskedRidge

try:
    __version__ = version("mlrdist")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["FullRidge", "MaskedRidge", "__version__"]
