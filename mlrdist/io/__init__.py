"""All side effects: stores (fsspec/zarr), image decode/encode, archives."""
