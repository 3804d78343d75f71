"""Pure NumPy kernels of masked regression: arrays in, arrays out.

No dask, xarray, zarr or fsspec imports here; the chunked and labelled layers wrap these.
"""

from .apply import apply_region
from .ridge import SOLVERS, block_nbytes, choose_solver, fit_block, fit_region, solver_costs
from .windows import check_receptive_field, extract_windows, pad_samples_last, window_offsets

__all__ = [
    "SOLVERS",
    "apply_region",
    "block_nbytes",
    "check_receptive_field",
    "choose_solver",
    "extract_windows",
    "fit_block",
    "fit_region",
    "pad_samples_last",
    "solver_costs",
    "window_offsets",
]
