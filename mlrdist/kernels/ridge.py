"""Batched ridge solvers for masked regression (pure NumPy).

Every output pixel ``i`` has its own ridge problem on the design ``A_i = [window_i, 1]``
(``n x p``, ``p = F + 1`` with ``F = k*k*C_s`` window features)::

    w_i = (A_i^T A_i + alpha I)^-1 A_i^T t_i = A_i^T (A_i A_i^T + alpha I)^-1 t_i

Four exact paths solve a *tile* of pixels at once; all agree with the per-pixel closed
form to rounding error (see ``tests/kernels``):

``"primal"``
    Builds each ``A_i`` explicitly and its Gram by batched matmul. ``O(n p^2)`` per pixel.
    Simple and the reference the others are checked against.
``"gram"``
    Primal with *shared* Gram entries. Every entry of every Gram in the tile is a gather
    from the local pixel-pair products ``Q_delta(j) = sum_s x_s(j) x_s(j + delta)`` for
    ``|delta| < k`` (half of them, by symmetry). Costs ``O(n k^2)`` per pixel to build the
    products instead of ``O(n k^4)``; cheapest when ``p <= n``.
``"dual"``
    Kernel (dual) form, for ``n < p``: one ``n x n`` system per pixel, ``A_i A_i^T`` by
    batched GEMM over the explicit windows (``O(n^2 k^2)`` per pixel), then
    ``w_i = A_i^T c_i``.
``"box"``
    The dual form with the Grams as ``k x k`` box sums of the sample-pair products
    ``x(j) x(j)^T`` (``n x n`` per image pixel ``j``). The vertical ``k``-sums of a row of
    tile columns are one batched GEMM of thin ``(n x kC) (kC x n)`` products (the column's
    ``k`` rows are contiguous in a transposed copy of the tile), the horizontal ones running
    sums along the row: ``O(n^2 k)`` multiply-adds and ``O(n^2)`` passes per pixel instead of
    ``O(n^2 k^2)``. Cheapest when ``n < p`` from ``k = 7`` up; 2x faster than ``"dual"`` at
    ``k = 15`` (measured), and the horizontal running sums restart at every tile so their
    float32 rounding stays bounded.

All paths factorise each pixel's matrix once and solve every right-hand side (several
targets, or several output channels in ``joint`` colour mode) with that factorisation.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .cost import GATHER_CHUNK, SOLVERS, choose_solver, default_subtile
from .windows import extract_windows

__all__ = ["SOLVERS", "fit_block", "fit_region"]

Solver = Literal["auto", "primal", "gram", "dual", "box"]


def fit_block(
    source: np.ndarray,
    targets: np.ndarray,
    *,
    receptive_field: int,
    alpha: float,
    solver: Solver = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Solve the masked ridge problems of one tile of output pixels.

    Parameters
    ----------
    source : ndarray, shape (th + k - 1, tw + k - 1, C_s, n)
        Zero-padded source tile with its halo, samples last (see
        :func:`~mlrdist.kernels.windows.pad_samples_last`).
    targets : ndarray, shape (th, tw, R, n)
        Right-hand sides: ``R`` target images per pixel (targets x output channels),
        samples last. Same dtype as ``source``.
    receptive_field : int
        Odd window side ``k``.
    alpha : float
        Ridge penalty (> 0), applied to the bias too (data are not centred).
    solver : {"auto", "primal", "gram", "dual"}
        Path; ``"auto"`` picks the cheapest by :func:`choose_solver`.

    Returns
    -------
    coef : ndarray, shape (th, tw, R, k * k * C_s)
        Window weights, features ordered ``(dy, dx, channel)``.
    intercept : ndarray, shape (th, tw, R)
        Weight of the bias feature.
    """
    k = receptive_field
    th, tw, n_rhs, n = targets.shape
    channels = source.shape[2]
    path: str = choose_solver(n, k, channels, n_rhs, th, tw) if solver == "auto" else solver
    if path == "primal":
        return _fit_primal(source, targets, k, alpha)
    if path == "gram":
        return _fit_gram(source, targets, k, alpha)
    if path == "dual":
        return _fit_dual(source, targets, k, alpha)
    if path == "box":
        return _fit_box(source, targets, k, alpha)
    raise ValueError(f"solver must be 'auto' or one of {SOLVERS}, got {solver!r}")


# --------------------------------------------------------------------------- primal paths


def _solve_spd(G: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched solve of symmetric positive definite systems ``G x = b``.

    float32 systems are factorised in float64: batched LAPACK is no faster in single
    precision for these small matrices (measured), and the float32 path then loses
    accuracy only in forming ``G`` and ``b``.
    """
    if G.dtype == np.float32:
        return np.linalg.solve(G.astype(np.float64), b.astype(np.float64)).astype(np.float32)
    return np.linalg.solve(G, b)


def _primal_rhs(source: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """``A_i^T t_i`` for every pixel: shape (npix, p, R)."""
    th, tw, n_rhs, _ = targets.shape
    C = source.shape[2]
    out = np.empty((th, tw, k * k * C + 1, n_rhs), dtype=targets.dtype)
    w = 0
    for oy in range(k):
        for ox in range(k):
            win = source[oy : oy + th, ox : ox + tw]
            out[:, :, w * C : (w + 1) * C] = np.einsum("yxcs,yxrs->yxcr", win, targets)
            w += 1
    out[:, :, -1] = targets.sum(axis=-1)
    return out.reshape(th * tw, k * k * C + 1, n_rhs)


def _split(W: np.ndarray, th: int, tw: int) -> tuple[np.ndarray, np.ndarray]:
    """(npix, p, R) solution -> coef (th, tw, R, F), intercept (th, tw, R)."""
    W = W.reshape(th, tw, W.shape[1], W.shape[2])
    coef = np.ascontiguousarray(W[:, :, :-1, :].transpose(0, 1, 3, 2))
    intercept = np.ascontiguousarray(W[:, :, -1, :])
    return coef, intercept


def _fit_primal(source, targets, k, alpha):
    th, tw, _, n = targets.shape
    At = extract_windows(source, k)  # (npix, F, n)
    npix, F, _ = At.shape
    G = np.empty((npix, F + 1, F + 1), dtype=source.dtype)
    np.matmul(At, At.transpose(0, 2, 1), out=G[:, :F, :F])
    colsum = At.sum(axis=2)
    G[:, :F, F] = colsum
    G[:, F, :F] = colsum
    G[:, F, F] = n
    _add_ridge(G, alpha)
    b = _primal_rhs(source, targets, k)
    return _split(_solve_spd(G, b), th, tw)


def _add_ridge(G: np.ndarray, alpha: float) -> None:
    d = np.einsum("ijj->ij", G)  # writable diagonal view
    d += alpha


def _half_deltas(k: int) -> list[tuple[int, int]]:
    """Offsets ``delta`` with ``delta > 0`` lexicographically (plus 0), ``|delta| < k``."""
    return [
        (dy, dx)
        for dy in range(0, k)
        for dx in range(-(k - 1), k)
        if dy > 0 or dx >= 0
    ]


def _pair_products(source: np.ndarray, k: int) -> tuple[np.ndarray, dict]:
    """``Q[q, c1, c2, y, x] = sum_s S[y, x, c1, s] S[y + dy_q, x + dx_q, c2, s]``."""
    Hr, Wr, C, _ = source.shape
    deltas = _half_deltas(k)
    Q = np.zeros((len(deltas), C, C, Hr, Wr), dtype=source.dtype)
    for q, (dy, dx) in enumerate(deltas):
        x0, x1 = max(0, -dx), Wr - max(0, dx)
        a = source[: Hr - dy, x0:x1]
        b = source[dy:, x0 + dx : x1 + dx]
        if C == 1:
            Q[q, 0, 0, : Hr - dy, x0:x1] = np.einsum("yxs,yxs->yx", a[:, :, 0], b[:, :, 0])
        else:
            Q[q, :, :, : Hr - dy, x0:x1] = np.einsum("yxcs,yxds->cdyx", a, b)
    return Q, {d: q for q, d in enumerate(deltas)}


@functools.lru_cache(maxsize=32)
def _gram_index(k: int, C: int, th: int, tw: int) -> np.ndarray:
    """Flat indices into the pair products ``Q`` of every Gram entry of a tile.

    Returns int array of shape ``(th * tw, F, F)``: ``G[i] = Q.ravel()[idx[i]]``.
    """
    Hr, Wr = th + k - 1, tw + k - 1
    index = {d: q for q, d in enumerate(_half_deltas(k))}
    kk, F = k * k, k * k * C
    base = np.empty((F, F), dtype=np.int64)
    c = np.arange(C)
    for w1 in range(kk):
        oy1, ox1 = divmod(w1, k)
        for w2 in range(kk):
            oy2, ox2 = divmod(w2, k)
            q = index.get((oy2 - oy1, ox2 - ox1))
            if q is not None:  # Q[delta, c1, c2] at the first pixel
                oy, ox, ca, cb = oy1, ox1, c[:, None], c[None, :]
            else:  # Q[-delta, c2, c1] at the second pixel
                q = index[(oy1 - oy2, ox1 - ox2)]
                oy, ox, ca, cb = oy2, ox2, c[None, :], c[:, None]
            base[w1 * C : (w1 + 1) * C, w2 * C : (w2 + 1) * C] = (
                (q * C + ca) * C + cb
            ) * (Hr * Wr) + oy * Wr + ox
    y, x = np.divmod(np.arange(th * tw), tw)
    pix = y * Wr + x
    idx = pix[:, None, None] + base[None]
    idx.setflags(write=False)
    return idx


def _fit_gram(source, targets, k, alpha):
    th, tw, _, n = targets.shape
    C = source.shape[2]
    Q, _ = _pair_products(source, k)
    kk, F = k * k, k * k * C
    npix = th * tw
    G = np.empty((npix, F + 1, F + 1), dtype=source.dtype)
    # gathered in cache-sized chunks of pixels: a single np.take into the strided block
    # would allocate a copy of the whole index and a temporary the size of the Grams
    idx, Qflat = _gram_index(k, C, th, tw), Q.ravel()
    step = max(1, GATHER_CHUNK // (F * F * 8))
    buf = np.empty((min(step, npix), F, F), dtype=source.dtype)
    for i0 in range(0, npix, step):
        i1 = min(npix, i0 + step)
        np.take(Qflat, idx[i0:i1], out=buf[: i1 - i0], mode="clip")
        G[i0:i1, :F, :F] = buf[: i1 - i0]
    del Q, buf
    colsum = source.sum(axis=-1)  # (Hr, Wr, C)
    for w in range(kk):
        oy, ox = divmod(w, k)
        cs = colsum[oy : oy + th, ox : ox + tw].reshape(npix, C)
        G[:, w * C : (w + 1) * C, F] = cs
        G[:, F, w * C : (w + 1) * C] = cs
    G[:, F, F] = n
    _add_ridge(G, alpha)
    b = _primal_rhs(source, targets, k)
    return _split(_solve_spd(G, b), th, tw)


# --------------------------------------------------------------------------- dual path


def _fit_dual(source, targets, k, alpha):
    th, tw, n_rhs, n = targets.shape
    npix = th * tw
    rhs = targets.reshape(npix, n_rhs, n).transpose(0, 2, 1)  # (npix, n, R)
    if source.dtype == np.float32:
        K, Dt, m = _dual_gram_centred(source, k)
        _add_ridge(K, alpha)
        c = _solve_spd(K, rhs.astype(np.float64))  # (npix, n, R), float64
        del K
        # A c = D c + m (1^T c): the GEMM in float32, the mean term in float64
        coef = np.matmul(Dt, c.astype(np.float32)).astype(np.float64)
        csum = c.sum(axis=1)  # (npix, R)
        coef += m.astype(np.float64)[:, :, None] * csum[:, None, :]
        coef = coef.astype(np.float32)
        intercept = csum.astype(np.float32)
    else:
        At = extract_windows(source, k)  # (npix, F, n)
        K = np.matmul(At.transpose(0, 2, 1), At)  # (npix, n, n)
        K += 1.0  # bias feature
        _add_ridge(K, alpha)
        c = _solve_spd(K, rhs)
        del K
        coef = np.matmul(At, c)  # (npix, F, R)
        intercept = c.sum(axis=1)
    return (
        np.ascontiguousarray(coef.transpose(0, 2, 1)).reshape(th, tw, n_rhs, -1),
        intercept.reshape(th, tw, n_rhs),
    )


def _dual_gram_centred(source: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A A^T + 1`` in float64 from a float32 tile, accurately.

    Windows share a large common part (the mean face), which float32 rounds badly in
    ``A A^T``. The mean window of a pixel over samples is the window of the mean image, so
    with the source centred per pixel, ``A = m + D`` where ``D`` are the windows of the
    centred source and ``m`` those of the mean image. Only the small ``D D^T`` is formed in
    float32 (the GEMM, where float32 pays off); the mean terms ``m.m + m.d_s + m.d_t`` are
    added in float64. Rounding drops by the ratio of the window norms to their deviations
    (about 15x on faces).

    Returns ``K`` (npix, n, n) float64, ``D`` (npix, F, n) and ``m`` (npix, F) float32.
    """
    mu = source.mean(axis=-1, keepdims=True, dtype=np.float64).astype(np.float32)  # (Hr, Wr, C, 1)
    Dt = extract_windows(source - mu, k)  # (npix, F, n)
    m = extract_windows(mu, k)[:, :, 0]  # (npix, F)
    npix, _, n = Dt.shape
    u = np.matmul(m[:, None, :], Dt)[:, 0, :].astype(np.float64)  # m . d_s, (npix, n)
    m64 = m.astype(np.float64)
    u_c = u + (np.einsum("pf,pf->p", m64, m64) + 1.0)[:, None]  # m . d_t + m . m + bias
    K = np.empty((npix, n, n), dtype=np.float64)
    np.add(np.matmul(Dt.transpose(0, 2, 1), Dt), u[:, :, None], out=K)  # cast fused into the add
    K += u_c[:, None, :]
    return K, Dt, m


# --------------------------------------------------------------------------- box path


def _box_sum(a: np.ndarray, k: int) -> np.ndarray:
    """``k x k`` box sums over the first two axes of ``a`` (valid part), in float64."""
    c = np.zeros((a.shape[0] + 1, a.shape[1] + 1) + a.shape[2:], dtype=np.float64)
    np.cumsum(a, axis=0, dtype=np.float64, out=c[1:, 1:])
    np.cumsum(c[1:, 1:], axis=1, out=c[1:, 1:])
    return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


def _fit_box(source, targets, k, alpha):
    """The ``"box"`` path: dual systems whose Grams are box sums of pair products.

    Rows of the tile are solved one at a time: the column Grams ``Kc[x]`` (the sum over
    the ``k`` window rows of ``x(j) x(j)^T`` in image column ``x``) by one batched GEMM,
    the row's Grams ``Kr[x] = sum(Kc[x : x + k])`` by running sums, then one batched solve.
    """
    th, tw, n_rhs, n = targets.shape
    Hr, Wr, C, _ = source.shape
    kc = k * C
    dt = source.dtype
    centred = dt == np.float32
    if centred:  # see _dual_gram_centred: D in float32, the mean terms in float64
        # C order: the strided views below assume it, whatever the caller's layout
        mu64 = np.ascontiguousarray(source.mean(axis=-1, keepdims=True, dtype=np.float64))  # (Hr, Wr, C, 1)
        mu = mu64.astype(dt)
        X = np.subtract(source, mu, order="C")
        u = _box_sum(np.einsum("yxcs,yxc->yxs", X, mu[..., 0], dtype=np.float64), k)
        u_c = u + (_box_sum((mu64[..., 0] ** 2).sum(axis=-1), k) + 1.0)[:, :, None]
    else:
        X = np.ascontiguousarray(source)
    # columns of k rows x C channels, samples last, contiguous per image column
    Xt = np.ascontiguousarray(X.transpose(1, 0, 2, 3))  # (Wr, Hr, C, n)
    Kc = np.empty((Wr, n, n), dtype=dt)
    Kr = np.empty((tw, n, n), dtype=dt)
    K = np.empty((tw, n, n), dtype=np.float64)
    rhs = targets.transpose(0, 1, 3, 2)  # (th, tw, n, R)
    c = np.empty((th, tw, n, n_rhs), dtype=np.float64)
    for y in range(th):
        V = Xt[:, y : y + k].reshape(Wr, kc, n)  # view
        np.matmul(V.transpose(0, 2, 1), V, out=Kc)  # vertical k-sums of pair products
        np.sum(Kc[:k], axis=0, out=Kr[0])
        for x in range(1, tw):  # horizontal running k-sums
            np.add(Kr[x - 1], Kc[x + k - 1], out=Kr[x])
            Kr[x] -= Kc[x - 1]
        if centred:
            np.add(Kr, u[y][:, :, None], out=K)
            K += u_c[y][:, None, :]
        else:
            np.add(Kr, 1.0, out=K)  # bias feature
        _add_ridge(K, alpha)
        c[y] = _solve_spd(K, rhs[y].astype(np.float64, copy=False))
    # coef = A c, one window row oy at a time: rows X[y + oy, x : x + k] are contiguous
    coef = np.empty((th, tw, k, kc, n_rhs), dtype=np.float64 if centred else dt)
    cs = c.astype(dt, copy=False)
    for oy in range(k):  # (ox, c) is one axis of stride X.strides[2] in C order
        V = as_strided(X[oy:], shape=(th, tw, kc, n), strides=X.strides, writeable=False)
        np.matmul(V, cs, out=coef[:, :, oy])
    csum = c.sum(axis=2)  # (th, tw, R)
    if centred:
        m = as_strided(mu64, shape=(th, tw, k, kc), strides=(mu64.strides[0], mu64.strides[1], mu64.strides[0], mu64.strides[2]), writeable=False)
        coef += m[..., None] * csum[:, :, None, None, :]
    coef = coef.reshape(th, tw, k * kc, n_rhs).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(coef, dtype=dt), csum.astype(dt)


# --------------------------------------------------------------------------- regions


def fit_region(
    source: np.ndarray,
    targets: np.ndarray,
    *,
    receptive_field: int,
    alpha: float,
    colour: str = "per_channel",
    solver: Solver = "auto",
    subtile: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit masked ridge weights for every pixel of a region (any size), single-threaded.

    The region is solved in cache-sized sub-tiles; callers that want threads split the
    region into row bands (each a multiple of ``subtile`` rows) and call this on each band:
    every sub-tile then sees the same data and gives the same bytes (see
    :func:`mlrdist.execution.thread_map`).

    Parameters
    ----------
    source : ndarray, shape (h + k - 1, w + k - 1, C, n)
        Source region with its halo (zeros outside the image), samples last.
    targets : ndarray, shape (h, w, m, C, n)
        ``m`` target stacks, samples last, same dtype as ``source``.
    receptive_field, alpha, solver
        As :func:`fit_block`.
    colour : {"per_channel", "joint"}
        ``per_channel``: output channel ``c`` sees input channel ``c`` only (the paper);
        ``joint``: every output channel sees the window of all input channels.
    subtile : int, optional
        Side of the sub-tiles solved at once (default :func:`~mlrdist.kernels.cost.default_subtile`).

    Returns
    -------
    coef : ndarray, shape (m, C, h, w, F)
        ``F = k*k`` (per_channel) or ``k*k*C`` (joint), features ``(dy, dx, channel)``.
    intercept : ndarray, shape (m, C, h, w)
    """
    k = receptive_field
    h, w, m, C, n = targets.shape
    F = k * k * (C if colour == "joint" else 1)
    coef = np.empty((m, C, h, w, F), dtype=source.dtype)
    intercept = np.empty((m, C, h, w), dtype=source.dtype)
    t = subtile or default_subtile(k)
    groups = [slice(None)] if colour == "joint" else [slice(c, c + 1) for c in range(C)]
    for y in range(0, h, t):
        for x in range(0, w, t):
            for g in groups:
                th, tw = min(t, h - y), min(t, w - x)
                src = source[y : y + th + k - 1, x : x + tw + k - 1, g]
                rhs = targets[y : y + th, x : x + tw, :, g].reshape(th, tw, -1, n)
                cb, ib = fit_block(src, rhs, receptive_field=k, alpha=alpha, solver=solver)
                # (th, tw, m * Cg, F) -> (m, Cg, th, tw, F)
                Cg = rhs.shape[2] // m
                coef[:, g, y : y + th, x : x + tw] = cb.reshape(th, tw, m, Cg, F).transpose(2, 3, 0, 1, 4)
                intercept[:, g, y : y + th, x : x + tw] = ib.reshape(th, tw, m, Cg).transpose(2, 3, 0, 1)
    return coef, intercept
