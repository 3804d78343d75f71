"""Pure NumPy kernels of masked regression: arrays in, arrays out, single-threaded.

No dask, xarray, zarr or fsspec imports here, and no threads: the chunked and labelled
layers wrap these (thread fan-out and BLAS limits live in :mod:`mlrdist.execution`).

* :mod:`~mlrdist.kernels.windows` -- receptive-field geometry, padding, gathers
* :mod:`~mlrdist.kernels.ridge` -- the exact solver paths (primal, gram, dual, box)
* :mod:`~mlrdist.kernels.cost` -- path choice and projected memory per block
* :mod:`~mlrdist.kernels.loo` -- closed-form leave-one-out over a penalty grid
* :mod:`~mlrdist.kernels.apply` -- synthesis of a block from weights
* :mod:`~mlrdist.kernels.exact` -- synthesis whose bytes do not depend on the batch
"""

from .apply import apply_region
from .cost import SOLVERS, block_nbytes, choose_solver, default_subtile, solver_costs
from .exact import ExactWeights, apply_exact, quantize
from .loo import gather_windows, loo_errors
from .ridge import fit_block, fit_region
from .windows import check_receptive_field, extract_windows, pad_samples_last, window_offsets

__all__ = [
    "SOLVERS",
    "ExactWeights",
    "apply_exact",
    "apply_region",
    "block_nbytes",
    "check_receptive_field",
    "choose_solver",
    "default_subtile",
    "extract_windows",
    "fit_block",
    "fit_region",
    "gather_windows",
    "loo_errors",
    "pad_samples_last",
    "quantize",
    "solver_costs",
    "window_offsets",
]
