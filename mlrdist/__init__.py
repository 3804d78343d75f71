"""mlrdist: masked linear regression for facial expression synthesis, at scale.

Khan, Akram, Mahmood, Ashraf, Murtaza, "Masked Linear Regression for Learning Local
Receptive Fields for Facial Expression Synthesis", IJCV 128(5), 2020.

The in-memory models are imported eagerly; the stages (which pull in xarray, zarr, dask)
on first use.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from .baselines.l2 import FullRidge
from .config import IngestConfig, SynthesisConfig, TrainConfig
from .estimator import MaskedRidge
from .io.location import Location

try:
    __version__ = version("mlrdist")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

# public name -> module defining it (imported on first access)
_LAZY = {
    "fit_weights": "mlrdist.train",
    "ingest_images": "mlrdist.ingest",
    "load_sample": "mlrdist.datasets",
    "load_weights": "mlrdist.io.weights_store",
    "open_faces": "mlrdist.io.faces_store",
    "select_hyperparameters": "mlrdist.select",
    "synthesize": "mlrdist.synthesize",
}

__all__ = [
    "FullRidge",
    "IngestConfig",
    "Location",
    "MaskedRidge",
    "SynthesisConfig",
    "TrainConfig",
    "__version__",
    "fit_weights",
    "ingest_images",
    "load_sample",
    "load_weights",
    "open_faces",
    "select_hyperparameters",
    "synthesize",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlrdist' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
