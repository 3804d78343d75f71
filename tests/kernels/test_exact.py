"""Exact synthesis: the same bytes for an image whatever its batch, the kernel's path, the
BLAS kernel or the CPU, and equal to the float64 model to rounding."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import mlrdist.kernels.apply as apply_mod
from mlrdist import MaskedRidge
from mlrdist.kernels.exact import apply_exact, quantize


def _model_and_faces(k: int, colour: str, n: int = 40):
    rng = np.random.default_rng(k)
    X = rng.integers(0, 256, (16, 24, 20, 3), dtype=np.uint8)
    Y = np.clip(X.astype(int) * 0.8 + 30 + rng.integers(-10, 10, X.shape), 0, 255).astype(np.uint8)
    model = MaskedRidge(k, 0.4, colour=colour, n_jobs=1).fit(X, Y)
    faces = rng.integers(0, 256, (n, 24, 20, 3), dtype=np.uint8)
    return model, faces


CASES = [(3, "per_channel"), (7, "per_channel"), (5, "joint")]


@pytest.mark.parametrize(("k", "colour"), CASES)
def test_the_same_bytes_for_any_batch_and_path(k, colour, monkeypatch):
    model, faces = _model_and_faces(k, colour)
    ew = quantize(model.coef_, model.intercept_, colour)
    ref = apply_exact(faces, ew)
    for batch in (1, 5, 8, 13, 40):
        got = np.concatenate([apply_exact(faces[i : i + batch], ew) for i in range(0, len(faces), batch)], axis=1)
        np.testing.assert_array_equal(got, ref)
    for forced in ({"_MIN_K_BANDED": 10**9}, {"_MIN_K_BANDED": 1, "_MIN_BANDED": 1}):  # shift-and-add, GEMM
        for name, value in forced.items():
            monkeypatch.setattr(apply_mod, name, value)
        np.testing.assert_array_equal(apply_exact(faces, ew), ref)
        monkeypatch.undo()


@pytest.mark.parametrize(("k", "colour"), CASES)
def test_equal_to_the_float64_model_to_rounding(k, colour):
    model, faces = _model_and_faces(k, colour)
    got = apply_exact(faces, quantize(model.coef_, model.intercept_, colour))[0]
    want = apply_mod.apply_region(faces / 255.0, model.coef_, model.intercept_, colour=colour, pad=k // 2)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_large_weights_keep_sums_exact():
    """Weights of any size choose a scale where every window sum stays below 2**53."""
    rng = np.random.default_rng(0)
    coef = rng.normal(0, 1e6, (1, 1, 6, 6, 49))
    ew = quantize(coef, np.zeros((1, 1, 6, 6)))
    assert np.abs(ew.W).sum(axis=-1).max() * 255 < 2**53
    faces = np.full((3, 6, 6, 1), 255, np.uint8)
    np.testing.assert_array_equal(apply_exact(faces, ew)[:, :1], apply_exact(faces[:1], ew))


SCRIPT = """
import hashlib, sys
import numpy as np
from mlrdist.kernels.exact import apply_exact, quantize
d = np.load(sys.argv[1])
P = apply_exact(d["faces"], quantize(d["coef"], d["intercept"], "per_channel"))
print(hashlib.sha256(P.tobytes()).hexdigest())
"""


def test_the_same_bytes_with_another_blas_kernel(tmp_path):
    """OpenBLAS picks its kernels by CPU (AVX2 machines get 'Haswell' ones, whose GEMM rounding
    depends on an image's row); the exact path gives the same bytes under each. The weights
    are fitted once, here: only synthesis runs under each kernel."""
    model, faces = _model_and_faces(7, "per_channel", n=19)
    weights = tmp_path / "weights.npz"
    np.savez(weights, coef=model.coef_, intercept=model.intercept_, faces=faces)

    def run(coretype: str | None) -> str:
        env = {**os.environ, **({"OPENBLAS_CORETYPE": coretype} if coretype else {})}
        done = subprocess.run([sys.executable, "-c", SCRIPT, str(weights)], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    here = run(None)
    for coretype in ("Haswell", "Sandybridge", "Nehalem"):
        assert run(coretype) == here, coretype
