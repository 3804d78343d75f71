"""Synthesis of images from masked-regression weights (pure NumPy).

MR is a locally connected layer: ``y[i] = coef[i] . window(x, i) + intercept[i]``, one
weight vector per output pixel, so there is no weight sharing for a convolution to exploit.
Two formulations:

*Banded GEMM* (stacks of 8 images or more). Cut each output row into segments of
``s = 16`` pixels. For window row ``oy``, the outputs of one segment are
``A @ T``: ``A`` holds the ``s + k - 1`` input pixels the segment's windows span, one row
per image (a strided view, no copy), and ``T`` is the ``(s + k - 1) x s`` band matrix of the
segment's weights. Summing the ``k`` products over ``oy`` gives the segment; one batched
``matmul`` per ``oy`` covers a band of rows and a chunk of images. The band matrices spend
``(s + k - 1) / k`` times the useful multiply-adds (3.1x at k = 7) but run at BLAS speed:
2-7x faster than shift-and-add for k = 5..15 (``benchmarks/bench_apply.py``). The band
matrices are built once per band of rows for the whole stack, and the padded input once per
band and chunk of images, so working memory stays a few MB whatever the image size.

*Shift and multiply-add* (fewer than 8 images, or k < 5): for every window offset, multiply the shifted
input plane by that offset's weight map and accumulate.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["apply_region"]

_SEGMENT = 16  # output pixels per row segment (one small GEMM)
_MIN_BANDED = 8  # images from which the banded GEMM pays off (measured)
_MIN_K_BANDED = 5  # receptive field from which it pays off (measured)
_GEMM_IMAGES = 64  # images per GEMM (rows of A)
_SLAB_BYTES = 4 * 2**20  # padded input rows of one band for a chunk of images
_BAND_BYTES = 4 * 2**20  # band matrices of one band of rows
_SHIFT_CHUNK_BYTES = 256 * 1024  # images per shift-and-add chunk


def apply_region(
    source: np.ndarray,
    coef: np.ndarray,
    intercept: np.ndarray,
    *,
    colour: str = "per_channel",
    pad: int = 0,
    clip: tuple[float, float] | None = None,
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """Apply masked-regression weights to a stack of images (single-threaded).

    Parameters
    ----------
    source : ndarray, shape (n, h + k - 1 - 2 pad, w + k - 1 - 2 pad, C)
        Input region with its halo; ``pad`` more pixels of zeros are added on every side
        (``pad = k // 2`` for whole images).
    coef : ndarray, shape (m, C, h, w, F)
        Window weights; ``F = k*k`` (per_channel) or ``k*k*C`` (joint), features ordered
        ``(dy, dx, channel)``.
    intercept : ndarray, shape (m, C, h, w)
    colour : {"per_channel", "joint"}
    pad : int
        Zero padding added around the spatial axes of ``source``.
    clip : (low, high), optional
        Clip the outputs to this range.
    rows : (y0, y1), optional
        Compute output rows ``[y0, y1)`` only (default all). Callers split rows across
        threads this way: every output pixel is computed by the same operations whatever
        the split, so the bytes do not depend on it.

    Returns
    -------
    ndarray, shape (m, n, y1 - y0, w, C), dtype of ``coef``
        One synthesised stack per target.
    """
    m, C, h, w, F = coef.shape
    n = source.shape[0]
    cin = C if colour == "joint" else 1
    k = int(round((F // cin) ** 0.5))
    if source.shape[1] + 2 * pad != h + k - 1 or source.shape[2] + 2 * pad != w + k - 1:
        raise ValueError(
            f"source region {source.shape[1:3]} with pad {pad} does not match weights of "
            f"{h}x{w} pixels and receptive field {k}"
        )
    y0, y1 = rows if rows is not None else (0, h)
    if not 0 <= y0 <= y1 <= h:
        raise ValueError(f"rows must satisfy 0 <= y0 <= y1 <= {h}, got {rows}")
    dtype = coef.dtype
    out = np.empty((m, n, y1 - y0, w, C), dtype=dtype)
    if n < _MIN_BANDED or k < _MIN_K_BANDED:
        chunk = max(1, _SHIFT_CHUNK_BYTES // max(1, h * w * dtype.itemsize))
        maps = np.ascontiguousarray(np.moveaxis(coef[:, :, y0:y1], -1, 2))  # (m, C, F, rows, w)
        jobs = [partial(_shift_add, slice(i0, min(n, i0 + chunk)), maps, y0, y1) for i0 in range(0, n, chunk)]
    else:
        s = min(_SEGMENT, w)
        wp = -(-w // s) * s  # output width padded to whole segments
        # band matrices of one output row, every target and channel: C * cin * (s + k - 1) * s
        # per segment and window row (cin = cout = C when joint, cin = cout = 1 per channel)
        t_row = m * (wp // s) * k * (s + k - 1) * s * C * cin * dtype.itemsize
        band = int(max(1, min(h, _BAND_BYTES // t_row)))
        jobs = [partial(_banded, b0, min(y1, b0 + band), y0, s, wp) for b0 in range(y0, y1, band)]
    for job in jobs:
        job(source, coef, intercept, out, colour, pad, k)
    if clip is not None:
        np.clip(out, clip[0], clip[1], out=out)
    return out


def _band_matrices(w_band: np.ndarray, k: int, s: int, cin: int) -> np.ndarray:
    """Band matrices of a band of rows.

    ``w_band`` : (cout, bh, wp, k, k, cin) weights (zero beyond the region's width).
    Returns ``T`` (bh, wp // s, k, (s + k - 1) * cin, s * cout) with
    ``T[y, g, oy, (j + ox) * cin + ci, j * cout + co] = w_band[co, y, g * s + j, oy, ox, ci]``.
    """
    cout, bh, wp = w_band.shape[:3]
    T = np.zeros((bh, wp // s, k, (s + k - 1) * cin, s * cout), dtype=w_band.dtype)
    j, ox, ci, co = np.meshgrid(np.arange(s), np.arange(k), np.arange(cin), np.arange(cout), indexing="ij")
    rows, cols = (j + ox) * cin + ci, j * cout + co  # (s, k, cin, cout)
    # (cout, bh, g, j, oy, ox, ci) -> (bh, g, oy, j, ox, ci, cout)
    T[:, :, :, rows, cols] = w_band.reshape(cout, bh, wp // s, s, k, k, cin).transpose(1, 2, 4, 3, 5, 6, 0)
    return T


def _banded(y0, y1, row0, s, wp, source, coef, intercept, out, colour, pad, k):
    """Banded-GEMM synthesis of output rows ``[y0, y1)`` of every image into ``out``, whose
    first row is output row ``row0``."""
    m, C, h, w, F = coef.shape
    n, hs, ws, _ = source.shape
    joint = colour == "joint"
    cin = cout = C if joint else 1
    groups = [slice(None)] if joint else [slice(c, c + 1) for c in range(C)]
    bh, nseg, seg_in = y1 - y0, wp // s, (s + k - 1) * cin
    item = coef.dtype.itemsize
    # padded input rows y0 - pad .. y1 + k - 1 - pad of the source, for a chunk of images
    slab_bytes = (bh + k - 1) * (wp + k - 1) * C * item
    nb = int(max(1, min(n, _GEMM_IMAGES, _SLAB_BYTES // slab_bytes)))
    shape = (nb, bh + k - 1, wp + k - 1, C) if joint else (C, nb, bh + k - 1, wp + k - 1)
    slab = np.zeros(shape, dtype=coef.dtype)
    r0, r1 = max(0, y0 - pad), min(hs, y1 + k - 1 - pad)  # source rows in the band
    d0 = r0 - (y0 - pad)
    coef_w = coef.reshape(m, C, h, w, k, k, cin)
    Ts = {}
    for t in range(m):
        for gi, g in enumerate(groups):
            wb = np.zeros((cout, bh, wp, k, k, cin), dtype=coef.dtype)
            wb[:, :, :w] = coef_w[t, g, y0:y1]
            Ts[t, gi] = _band_matrices(wb, k, s, cin)
    for i0 in range(0, n, nb):
        i1 = min(n, i0 + nb)
        rows = source[i0:i1, r0:r1]
        if joint:
            sb = slab[: i1 - i0]
            sb[:, d0 : d0 + r1 - r0, pad : pad + ws] = rows
        else:
            sb = slab[:, : i1 - i0]
            sb[:, :, d0 : d0 + r1 - r0, pad : pad + ws] = np.moveaxis(rows, -1, 0)
        for gi, g in enumerate(groups):
            P = sb if joint else sb[gi]  # (nb, bh + k - 1, wp + k - 1[, C]), rows contiguous
            sp = P.strides
            views = [
                as_strided(
                    P[:, oy:],
                    shape=(bh, nseg, i1 - i0, seg_in),
                    strides=(sp[1], s * cin * item, sp[0], item),
                    writeable=False,
                )
                for oy in range(k)
            ]
            for t in range(m):
                T = Ts[t, gi]
                acc = np.matmul(views[0], T[:, :, 0])  # (bh, nseg, nb, s * cout)
                for oy in range(1, k):
                    acc += np.matmul(views[oy], T[:, :, oy])
                res = acc.reshape(bh, nseg, i1 - i0, s, cout).transpose(2, 0, 1, 3, 4)
                res = res.reshape(i1 - i0, bh, wp, cout)[:, :, :w]
                dst = out[t, i0:i1, y0 - row0 : y1 - row0, :, g]
                np.add(res, np.moveaxis(intercept[t, g, y0:y1], 0, -1), out=dst)


def _shift_add(sl, maps, y0, y1, source, coef, intercept, out, colour, pad, k):
    """Shift-and-multiply-add synthesis of output rows ``[y0, y1)`` of images ``sl`` into
    ``out`` (m, n, y1 - y0, w, C).

    ``maps`` : (m, C, F, y1 - y0, w) contiguous weight maps, one per window offset.
    """
    m, C, h, w, F = coef.shape
    nb, bh = sl.stop - sl.start, y1 - y0
    hs, ws = source.shape[1:3]
    # padded rows y0 .. y1 + k - 1 are source rows (y0 - pad) ..; zeros beyond the source
    planes = np.zeros((nb, C, bh + k - 1, w + k - 1), dtype=coef.dtype)
    r0, r1 = max(0, y0 - pad), min(hs, y1 + k - 1 - pad)
    if r1 > r0:
        d0 = r0 - (y0 - pad)
        planes[:, :, d0 : d0 + r1 - r0, pad : pad + ws] = np.moveaxis(source[sl, r0:r1], -1, 1)
    acc = np.empty((nb, bh, w), dtype=coef.dtype)
    tmp = np.empty((nb, bh, w), dtype=coef.dtype)
    for t in range(m):
        for co in range(C):
            channels = range(C) if colour == "joint" else (co,)
            acc[...] = intercept[t, co, y0:y1]
            f = 0
            for oy in range(k):
                for ox in range(k):
                    for ci in channels:
                        np.multiply(maps[t, co, f], planes[:, ci, oy : oy + bh, ox : ox + w], out=tmp)
                        acc += tmp
                        f += 1
            out[t, sl, :, :, co] = acc
