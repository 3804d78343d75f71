"""GAN baselines: a few training steps at 32 px, seeds, save/load, forms, parameter errors.

XLA compiles these tests' networks at backend optimisation level 0 (unless XLA_FLAGS is
set already): the tests check behaviour, not speed, and compilation, which dominates their
run time, is about three times faster.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
jax = pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("optax")

from mlrdist.baselines.gan import CycleGAN, GANRegressor, Pix2Pix, StarGAN, levelled_off  # noqa: E402
from mlrdist.evaluate import count_parameters  # noqa: E402
from mlrdist.select import clone  # noqa: E402

SMALL = {"epochs": 2, "batch_size": 4, "base_channels": 4}
CLASSES = [Pix2Pix, CycleGAN, StarGAN]


def faces(n=8, size=32, c=3, seed=0):
    """Smooth random 'faces' and a brighter, shifted 'expression' of each, in [0, 1]."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    X = ndimage.gaussian_filter(rng.random((n, size, size, c)), sigma=(0, 2, 2, 0))
    X = (X - X.min()) / np.ptp(X)
    Y = np.clip(0.7 * np.roll(X, 2, axis=1) + 0.25, 0, 1)
    return X.astype(np.float32), Y.astype(np.float32)


def leaves(est):
    return jax.tree.leaves(est.generators_)


@pytest.fixture(scope="module")
def data():
    return faces()


@pytest.fixture(scope="module")
def fitted(data):
    X, Y = data
    return {cls: cls(**SMALL, validation_fraction=0.25).fit(X, Y) for cls in CLASSES}


@pytest.mark.parametrize("cls", CLASSES)
def test_fit_predict_single_target(cls, data, fitted):
    X, Y = data
    est = fitted[cls]
    P = est.predict(X)
    assert P.shape == X.shape and P.dtype == np.float32
    assert 0.0 <= P.min() and P.max() <= 1.0 and np.ptp(P) > 0
    (hist,) = est.history_.values()
    assert set(cls._loss_names) | {"seconds", "val_l1"} == set(hist)
    assert all(len(v) == 2 and np.all(np.isfinite(v)) for v in hist.values())
    n = sum(x.size for x in leaves(est))
    assert est.n_parameters_ == n == count_parameters(est)
    assert est.n_discriminator_parameters_ > 0


@pytest.mark.parametrize("cls", CLASSES)
def test_same_seed_same_weights_bitwise(cls, data, fitted):
    X, Y = data
    again = cls(**SMALL, validation_fraction=0.25).fit(X, Y)
    for a, b in zip(leaves(fitted[cls]), leaves(again), strict=True):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    for k, h in fitted[cls].history_.items():
        assert {n: v for n, v in h.items() if n != "seconds"} == {
            n: v for n, v in again.history_[k].items() if n != "seconds"}
    other = cls(**SMALL, validation_fraction=0.25, seed=1).fit(X, Y)
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(again), leaves(other), strict=True))


@pytest.mark.parametrize("cls", CLASSES)
def test_save_load_predicts_identically(cls, data, fitted, tmp_path):
    X, _ = data
    est = fitted[cls]
    est.save(tmp_path / "model")
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["class"] == cls.__name__ and cfg["image_shape"] == [32, 32, 3]
    assert {"jax", "flax", "optax", "mlrdist"} <= set(cfg["versions"])
    for loader in (cls, GANRegressor):
        back = loader.load(tmp_path / "model")
        assert type(back) is cls and back.get_params() == est.get_params()
        np.testing.assert_array_equal(back.predict(X), est.predict(X))
        assert back.n_parameters_ == est.n_parameters_
    wrong = next(c for c in CLASSES if c is not cls)
    with pytest.raises(ValueError, match=f"holds a {cls.__name__} model"):
        wrong.load(tmp_path / "model")


def test_save_to_fsspec_url(data, fitted):
    X, _ = data
    est = fitted[Pix2Pix]
    est.save("memory://gan/p2p")
    np.testing.assert_array_equal(Pix2Pix.load("memory://gan/p2p").predict(X), est.predict(X))


def test_load_rejects_a_mismatched_generator(data, fitted, tmp_path):
    fitted[Pix2Pix].save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["params"]["base_channels"] = 8
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError):
        Pix2Pix.load(tmp_path / "m")


def test_dict_targets_one_model_each_for_pix2pix(data):
    X, Y = data
    Y2 = {"smile": Y, "dark": 1.0 - Y}
    est = Pix2Pix(**SMALL).fit(X, Y2)
    P = est.predict(X[:3])
    assert list(P) == ["smile", "dark"] and all(p.shape == (3, 32, 32, 3) for p in P.values())
    assert list(est.generators_) == ["smile", "dark"]
    assert not np.array_equal(P["smile"], P["dark"])


def test_stargan_one_model_for_all_targets(data):
    X, Y = data
    Y3 = {"happy": Y, "sad": 1.0 - Y, "grey": np.full_like(Y, 0.5)}
    est = StarGAN(**SMALL).fit(X, Y3)
    assert list(est.generators_) == ["all"]
    assert est.domains_ == ("source", "happy", "sad", "grey")
    P = est.predict(X)
    assert list(P) == ["happy", "sad", "grey"] and all(p.shape == X.shape for p in P.values())
    assert not np.array_equal(P["happy"], P["sad"])
    stacked = StarGAN(**SMALL).fit(X, np.stack([Y, 1.0 - Y, np.full_like(Y, 0.5)])).predict(X)
    assert stacked.shape == (3, *X.shape)


def test_grayscale_uint8_stacks(data):
    X, Y = data
    Xg, Yg = (X[..., 0] * 255).astype(np.uint8), (Y[..., 0] * 255).astype(np.uint8)
    est = CycleGAN(**SMALL).fit(Xg, Yg)
    P = est.predict(Xg[:2])
    assert P.shape == (2, 32, 32) and P.dtype == np.float32


def test_pix2pix_learns_the_mapping(data):
    X, Y = data
    est = Pix2Pix(epochs=12, batch_size=4, base_channels=4, learning_rate=2e-3).fit(X, Y)
    l1 = est.history_["0"]["l1"]
    assert l1[-1] < 0.6 * l1[0]
    assert np.abs(est.predict(X) - Y).mean() < l1[0]


def test_params_protocol_and_clone():
    est = CycleGAN(epochs=3, lambda_identity=0.0)
    params = est.get_params()
    assert params["epochs"] == 3 and params["lambda_identity"] == 0.0 and "progress" in params
    twin = clone(est, seed=7)
    assert type(twin) is CycleGAN and twin.seed == 7 and twin.epochs == 3
    assert est.set_params(epochs=5) is est and est.epochs == 5
    with pytest.raises(ValueError, match="invalid parameter"):
        est.set_params(lambda_l1=1.0)


@pytest.mark.parametrize("params,match", [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"learning_rate": -1e-4}, "learning_rate"),
    ({"validation_fraction": 1.5}, "validation_fraction"),
    ({"seed": -1}, "seed"),
    ({"scaling": "none"}, "scaling='none' is not supported"),
    ({"lambda_l1": float("nan")}, "lambda_l1"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_params_fail_before_training(params, match, data):
    X, Y = data
    with pytest.raises(ValueError, match=match):
        Pix2Pix(**{**SMALL, **params}).fit(X, Y)


def test_bad_image_size_and_unfitted():
    X = np.zeros((4, 20, 20, 3), np.float32)
    with pytest.raises(ValueError, match="divisible by 8"):
        StarGAN(**SMALL).fit(X, X)
    with pytest.raises(ValueError, match="not fitted"):
        Pix2Pix().predict(X)
    with pytest.raises(ValueError, match="not fitted"):
        Pix2Pix().save("memory://nowhere")
    with pytest.raises(ValueError, match="leaves fewer than 2"):
        Pix2Pix(**SMALL, validation_fraction=0.8).fit(np.zeros((2, 32, 32)), np.zeros((2, 32, 32)))


def test_levelled_off():
    assert levelled_off([1.0] * 3) is None
    assert levelled_off(list(np.linspace(1.0, 0.5, 20))) is False
    assert levelled_off(list(np.r_[np.linspace(1.0, 0.5, 10), np.full(10, 0.5)])) is True


def test_mlrdist_does_not_import_jax_and_missing_jax_is_explained():
    code = "import sys, mlrdist, mlrdist.baselines; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    code = ("import sys; sys.modules['jax'] = None\n"
            "try:\n    import mlrdist.baselines.gan\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "pip install 'mlrdist[gan]'" in out
