"""Shared machinery of the GAN baselines: parameters, batching, training loop, predict,
history and pickle-free save/load.

A subclass provides the networks and one jitted training step; this base class feeds it
seeded batches, applies the pix2pix/CycleGAN learning-rate schedule (constant for the first
half of the epochs, then linearly to zero), records per-epoch losses and a held-out L1, and
runs the trained generator(s) for :meth:`predict`.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from ..._base import ImageRegressor
from ..._validation import check_positive_int
from ._nets import image_levels

__all__ = ["GANRegressor", "levelled_off"]

FORMAT = "mlrdist-gan"
FORMAT_VERSION = 1
PREDICT_CHUNK = 8  # images per generator call in predict (padded, so one compilation)
_ALL = "all"  # model name of a single model trained for every target


def levelled_off(values: list[float], fraction: float = 0.25, tol: float = 0.02) -> bool | None:
    """Whether a loss curve has levelled off.

    Compares the mean of the last ``fraction`` of the epochs with the mean of the same
    number of epochs before them: levelled off when the later mean improved by less than
    ``tol`` (relative).

    Parameters
    ----------
    values : list of float, one per epoch
    fraction : float
        Share of the epochs in each compared window.
    tol : float
        Relative improvement below which the curve counts as flat.

    Returns
    -------
    bool, or None when there are fewer than 8 epochs to judge from.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size < 8:
        return None
    w = max(2, int(round(fraction * v.size)))
    late, early = v[-w:].mean(), v[-2 * w : -w].mean()
    return bool((early - late) < tol * abs(early))


def check_float(value: Any, name: str, low: float, high: float = math.inf, *, closed: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    inside = (low <= v if closed else low < v) and v < high
    if not (ok and math.isfinite(v) and inside):
        bound = f"[{low}, {high})" if closed else f"({low}, {high})"
        raise ValueError(f"{name} must be a number in {bound}, got {value!r}")
    return v


def adam_step(tx: optax.GradientTransformation, grads, state, params, lr):
    """One Adam update with an externally scheduled learning rate (no recompilation)."""
    updates, state = tx.update(grads, state, params)
    params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
    return params, state


def adam(beta1: float) -> optax.GradientTransformation:
    """Adam's direction (``b2 = 0.999``), scaled by the learning rate in the step."""
    return optax.scale_by_adam(b1=beta1, b2=0.999)


def lsgan(logits: jnp.ndarray, real: bool) -> jnp.ndarray:
    """Least-squares GAN loss of Mao et al. 2017 (CycleGAN's choice)."""
    return jnp.mean((logits - (1.0 if real else 0.0)) ** 2)


def bce(logits: jnp.ndarray, real: bool) -> jnp.ndarray:
    """Vanilla GAN loss (pix2pix): sigmoid cross-entropy against all-real or all-fake."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, float(real))))


@functools.lru_cache(maxsize=32)
def _jit_generate(module) -> Callable:
    """Jitted ``generator(params, x)`` in eval mode, cached per architecture."""
    return jax.jit(module.apply)


_CLASSES: dict[str, type] = {}  # GAN classes by name, for loading saved models


class GANRegressor(ImageRegressor):
    """Base of :class:`Pix2Pix`, :class:`CycleGAN` and :class:`StarGAN`.

    Subclasses implement ``_models(X, Y)`` (which models to train on what), ``_init``
    (parameters and optimiser states), ``_step_fn`` (a jitted training step),
    ``_batches`` (index arrays of one epoch) and ``_generate`` (the generator of one
    target). Images are float32 in ``[-1, 1]`` inside; every random choice derives from
    ``seed`` (NumPy for batch order and validation split, JAX keys for initialisation and
    dropout), so a seed gives bit-identical weights on the same machine and JAX version
    (on a GPU, set ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` for the same guarantee;
    nothing in the code is CPU-specific).

    Attributes (after fit)
    ----------------------
    generators_ : dict of str -> parameter tree
        Trained generator parameters (float32) per model: one per target (named by
        ``str(target)``) or one named ``"all"``.
    history_ : dict of str -> dict of str -> list of float
        Per model, per epoch: mean training losses, ``seconds`` and, when
        ``validation_fraction > 0``, ``val_l1`` (mean absolute error on ``[0, 1]`` images of
        the held-out pairs).
    n_parameters_ : int
        Generator parameters needed to predict (discriminators are not counted).
    n_discriminator_parameters_ : int
    """

    # the names of the per-model training losses, in history order
    _loss_names: tuple[str, ...] = ()
    _single_model = False
    _nets: dict
    _g_in: tuple[int, ...]

    # -- parameters -------------------------------------------------------------------------

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES[cls.__name__] = cls

    def _validate_params(self) -> None:
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.base_channels, "base_channels")
        check_float(self.learning_rate, "learning_rate", 0.0, 1.0)
        check_float(self.beta1, "beta1", 0.0, 1.0, closed=True)
        check_float(self.validation_fraction, "validation_fraction", 0.0, 0.9, closed=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.scaling == "none":
            raise ValueError(
                "scaling='none' is not supported by the GAN baselines: their generators end in tanh "
                "and produce [0, 1] images only; use scaling='unit' or 'minmax'"
            )
        self._check_scaling()
        for name in self._lambda_names():
            check_float(getattr(self, name), name, 0.0, closed=True)

    def _lambda_names(self) -> list[str]:
        return [p for p in self._param_names() if p.startswith("lambda_")]

    def _work_dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    def _levels(self, shape: tuple[int, ...], cap: int, need: int) -> int:
        levels = image_levels(shape[0], shape[1], cap)
        if levels < need:
            raise ValueError(
                f"{type(self).__name__} needs images whose sides are divisible by {2**need} and at "
                f"least {2 ** (need + 1)} px, got {shape[:2]}; resize them (e.g. to 64 or 128 px)"
            )
        return levels

    # -- training -----------------------------------------------------------------------------
    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        X, Y = 2.0 * X - 1.0, 2.0 * Y - 1.0
        train, val = self._split(len(X))
        self._build(X.shape[1:], Y.shape[0])
        self.generators_, self.history_ = {}, {}
        n_disc = 0
        for k, (name, targets) in enumerate(self._models()):
            key = jax.random.fold_in(jax.random.PRNGKey(self.seed), k)
            rng = np.random.default_rng([self.seed, 2, k])
            params, n_d, hist = self._train_one(key, rng, X, Y[list(targets)], train, val, name)
            self.generators_[name] = params
            self.history_[name] = hist
            n_disc += n_d
        self.n_parameters_ = _size(self.generators_)
        self.n_discriminator_parameters_ = int(n_disc)

    def _split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        n_val = int(round(float(self.validation_fraction) * n))
        if n_val and n - n_val < 2:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves fewer than 2 of {n} pairs "
                "for training; lower it or give more pairs"
            )
        order = np.random.default_rng([self.seed, 1]).permutation(n)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def _train_one(self, key, rng, X, Y, train, val, name):
        """Train one model on pairs ``train`` of ``X (n, H, W, C)``, ``Y (m', n, H, W, C)``;
        returns the generator parameters, the discriminator size and the history."""
        from tqdm.auto import tqdm

        init_key, loop_key = jax.random.split(key)
        state = self._init(init_key, X.shape[1:], len(Y))
        step = self._step_fn()
        data = self._device_data(X[train], Y[:, train])
        hist: dict[str, list[float]] = {k: [] for k in (*self._loss_names, "seconds")}
        if len(val):
            hist["val_l1"] = []
        bar = tqdm(range(int(self.epochs)), desc=f"{type(self).__name__} {name}", disable=not self.progress,
                   unit="epoch", leave=False)
        step_no = 0
        for _ in bar:
            t0 = time.perf_counter()
            batches = self._batches(rng, len(train), len(Y))
            losses = []
            for idx in batches:
                lr = jnp.float32(self._lr(step_no, len(batches)))
                state, out = step(state, data, jnp.asarray(idx), jax.random.fold_in(loop_key, step_no), lr)
                losses.append(out)
                step_no += 1
            means = np.mean(np.asarray(jax.device_get(losses)), axis=0)
            for k, v in zip(self._loss_names, means, strict=True):
                hist[k].append(float(v))
            if len(val):
                hist["val_l1"].append(self._val_l1(state["params"]["G"], X[val], Y[:, val]))
            hist["seconds"].append(time.perf_counter() - t0)
            bar.set_postfix({k: f"{v[-1]:.3f}" for k, v in hist.items() if k != "seconds"})
        bar.close()
        params = jax.device_get(state["params"])
        n_d = sum(_size(v) for k, v in params.items() if k.startswith("D"))
        return params["G"], n_d, hist

    def _batches(self, rng: np.random.Generator, n: int, n_targets: int) -> list[np.ndarray]:
        """Index arrays of one epoch: every pair once, in a fresh order, the last batch
        filled up from the start of the order so every batch has ``batch_size`` rows."""
        steps = max(1, math.ceil(n / int(self.batch_size)))
        order = np.resize(rng.permutation(n), steps * int(self.batch_size))
        return list(order.reshape(steps, int(self.batch_size)).astype(np.int32))

    def _device_data(self, X: np.ndarray, Y: np.ndarray) -> tuple:
        return jnp.asarray(X), jnp.asarray(Y)

    def _lr(self, step_no: int, per_epoch: int) -> float:
        """Constant learning rate for the first half of the epochs, then linear decay to 0."""
        total = int(self.epochs) * per_epoch
        half = total // 2
        lr = float(self.learning_rate)
        return lr if step_no < half else lr * (total - step_no) / max(total - half, 1)

    def _val_l1(self, gparams, Xv: np.ndarray, Yv: np.ndarray) -> float:
        errs = [np.abs(self._run(gparams, Xv, j) - Yv[j]).mean() for j in range(len(Yv))]
        return float(np.mean(errs)) / 2.0  # [-1, 1] -> [0, 1] units

    # -- prediction ---------------------------------------------------------------------------
    def _predict(self, X: np.ndarray) -> np.ndarray:
        X = 2.0 * X - 1.0
        outs = []
        for t in range(len(self.targets_)):
            name, j = self._model_of(t)
            outs.append(self._run(self.generators_[name], X, j))
        P = (np.stack(outs) + 1.0) / 2.0
        return np.clip(P, 0.0, 1.0, out=P).astype(np.float32)

    def _run(self, gparams, X: np.ndarray, j: int) -> np.ndarray:
        """Generator output for the model's ``j``-th target over ``X`` in ``[-1, 1]``, in
        padded chunks (one compilation per image shape)."""
        fn = _jit_generate(self._nets["G"])
        n, out = len(X), []
        chunk = PREDICT_CHUNK
        for s in range(0, n, chunk):
            xb = X[s : s + chunk]
            pad = chunk - len(xb)
            if pad:
                xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
            out.append(np.asarray(fn(gparams, self._generator_input(jnp.asarray(xb), j)))[: chunk - pad])
        return np.concatenate(out)

    def _generator_input(self, x: jnp.ndarray, j: int) -> jnp.ndarray:
        return x

    def _model_of(self, t: int) -> tuple[str, int]:
        """(model name, index among that model's targets) of target ``t``."""
        return (_ALL, t) if self._single_model else (str(self.targets_[t]), 0)

    def _models(self) -> list[tuple[str, tuple[int, ...]]]:
        """(model name, target indices) of the models to train."""
        if self._single_model:
            return [(_ALL, tuple(range(len(self.targets_))))]
        return [(str(name), (t,)) for t, name in enumerate(self.targets_)]

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str, storage_options: dict | None = None) -> None:
        """Write ``path/generator.msgpack`` (Flax msgpack of the generator parameters) and
        ``path/config.json`` (class, parameters, image shape, targets, history, versions).

        ``path`` is a folder or any fsspec URL; nothing is pickled.
        """
        import fsspec

        if not hasattr(self, "generators_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit(X, Y) first")
        fs, root = fsspec.core.url_to_fs(str(path), **(storage_options or {}))
        fs.makedirs(root, exist_ok=True)
        with fs.open(f"{root}/generator.msgpack", "wb") as fh:
            fh.write(serialization.to_bytes(self.generators_))
        with fs.open(f"{root}/config.json", "w") as fh:
            json.dump(self._config(), fh, indent=1)

    def _config(self) -> dict[str, Any]:
        import flax

        from ... import __version__

        params = {k: (v if isinstance(v, (bool, int, float, str, type(None))) else str(v))
                  for k, v in self.get_params().items()}
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "class": type(self).__name__,
            "params": params, "image_shape": list(self.image_shape_), "targets": list(self.targets_),
            "form": list(self._form), "n_parameters": self.n_parameters_,
            "n_discriminator_parameters": self.n_discriminator_parameters_, "history": self.history_,
            "versions": {"mlrdist": __version__, "jax": jax.__version__, "flax": flax.__version__,
                         "optax": optax.__version__, "numpy": np.__version__},
        }

    @classmethod
    def load(cls, path: str, storage_options: dict | None = None) -> GANRegressor:
        """Rebuild a model written by :meth:`save`; it predicts exactly as the saved one.

        Called on :class:`GANRegressor` itself, the class is taken from the config; on a
        subclass, a config of another class is an error.
        """
        import fsspec

        fs, root = fsspec.core.url_to_fs(str(path), **(storage_options or {}))
        with fs.open(f"{root}/config.json", "r") as fh:
            cfg = json.load(fh)
        if cfg.get("format") != FORMAT or cfg.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path} is not an {FORMAT} v{FORMAT_VERSION} model (config.json says "
                             f"{cfg.get('format')!r} v{cfg.get('format_version')!r})")
        klass = _CLASSES.get(cfg["class"])
        if klass is None or (cls is not GANRegressor and klass is not cls):
            raise ValueError(f"{path} holds a {cfg['class']} model, not a {cls.__name__}")
        est = klass(**cfg["params"])
        est.image_shape_ = tuple(cfg["image_shape"])
        est.n_features_in_ = int(np.prod(est.image_shape_))
        est.targets_ = tuple(cfg["targets"])
        est._form = tuple(cfg["form"])
        est.history_ = cfg["history"]
        est._build(est.image_shape_, len(est.targets_))
        template = est._generator_template()
        with fs.open(f"{root}/generator.msgpack", "rb") as fh:
            est.generators_ = serialization.from_bytes(template, fh.read())
        est._check_shapes(template)
        est.n_parameters_ = int(cfg["n_parameters"])
        est.n_discriminator_parameters_ = int(cfg["n_discriminator_parameters"])
        return est

    def _check_shapes(self, template) -> None:
        got = jax.tree.map(np.shape, self.generators_)
        want = jax.tree.map(np.shape, template)
        if got != want:
            raise ValueError("saved generator parameters do not match the architecture in config.json")

    # -- subclass hooks -------------------------------------------------------------------------
    def _build(self, image_shape: tuple[int, ...], n_targets: int) -> None:
        """Set ``self._nets`` (the Flax modules; ``"G"`` is the generator that predicts) and
        ``self._g_in`` (the generator's input shape ``(H, W, C_in)``)."""
        raise NotImplementedError

    def _init(self, key: jax.Array, image_shape: tuple[int, ...], n_targets: int) -> dict:
        """``{"params": {...}, "opt": {...}}`` of one model."""
        raise NotImplementedError

    def _step_fn(self) -> Callable:
        """Jitted ``step(state, data, idx, key, lr) -> (state, losses)``."""
        raise NotImplementedError

    def _generator_template(self) -> dict:
        """Zero parameters shaped like ``generators_`` (for loading)."""
        one = generator_template(self._nets["G"], self._g_in)
        return {name: one for name, _ in self._models()}


def _size(tree) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(tree)))


@functools.lru_cache(maxsize=32)
def _jit_init(module) -> Callable:
    return jax.jit(module.init)


def init_params(module, key, *shapes) -> Any:
    """Parameters of ``module`` for inputs of ``shapes`` (batch 1).

    Jitted: op-by-op initialisation of a U-Net takes tens of seconds on CPU.
    """
    dummies = [jnp.zeros((1, *s), jnp.float32) for s in shapes]
    return _jit_init(module)(key, *dummies)


def generator_template(module, *shapes) -> Any:
    """Shapes and dtypes of ``module``'s parameters, without computing them."""
    dummies = [jax.ShapeDtypeStruct((1, *s), jnp.float32) for s in shapes]
    tree = jax.eval_shape(module.init, jax.random.PRNGKey(0), *dummies)
    return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), tree)
