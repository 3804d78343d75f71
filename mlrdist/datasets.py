"""Face data sets: where the full sets live, the London set's download, a packaged sample.

* :func:`data_home` -- the folder holding ``london-face-set/`` and ``yale-faces/``, from the
  ``MLRDIST_DATA`` environment variable (never a hard-coded path).
* :func:`fetch_london` -- download the Face Research Lab London Set from figshare
  (doi:10.6084/m9.figshare.5047666.v5), checking its sha256.
* :func:`load_sample` -- 12 London subjects (neutral + smiling), eye-aligned, 128 x 128 colour,
  shipped inside the package (CC BY 4.0, see ``mlrdist/data/sample/CREDITS.md``).
* :func:`pairs` -- training pairs by subject from any faces dataset.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["LONDON_CITATION", "LONDON_URL", "build_sample", "data_home", "fetch_london", "load_sample", "pairs"]

LONDON_DOI = "10.6084/m9.figshare.5047666.v5"
LONDON_URL = "https://figshare.com/ndownloader/articles/5047666/versions/5"
# sha256 of the figshare archive of version 5. figshare builds the article zip on the fly and
# may change its bytes; pass ``sha256=None`` to skip the check (the images are then checked
# individually when ingested) or give the value you verified.
LONDON_SHA256: str | None = None
LONDON_CITATION = (
    "DeBruine, L., & Jones, B. (2017). Face Research Lab London Set (Version 5). figshare. "
    "doi:10.6084/m9.figshare.5047666.v5 (CC BY 4.0)"
)
SAMPLE_SUBJECTS = ("001", "002", "003", "010", "016", "025", "038", "061", "066", "081", "090", "122")


def data_home() -> Path | None:
    """The folder holding ``london-face-set/`` and ``yale-faces/``, from ``MLRDIST_DATA``.

    Returns None when the variable is unset or names no existing folder.
    """
    value = os.environ.get("MLRDIST_DATA")
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_dir() else None


def fetch_london(dest: str | Path, *, url: str = LONDON_URL, sha256: str | None = LONDON_SHA256,
                 timeout: float = 60.0) -> Path:
    """Download and unpack the London set into ``dest/london-face-set``.

    Parameters
    ----------
    dest : path
        Folder to create the set in (e.g. the value you then put in ``MLRDIST_DATA``).
    url : str
        figshare's download of doi:10.6084/m9.figshare.5047666.v5 (about 400 MB).
    sha256 : str, optional
        Expected digest of the download; a mismatch deletes the file and raises ValueError.
    timeout : float
        Seconds to wait for the server.

    Raises
    ------
    OSError
        When the download fails (the partial file is removed; the message says how to
        provide a local copy instead).
    ValueError
        On a checksum mismatch or an archive member that would land outside ``dest``.

    Returns
    -------
    Path of ``dest/london-face-set``.
    """
    if not isinstance(dest, str | Path) or not str(dest):
        raise ValueError(f"dest must be a folder path, got {dest!r}")
    if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower())):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    if not url.startswith(("https://", "http://", "file://")):
        raise ValueError(f"url must be an http(s) or file URL, got {url!r}")
    dest = Path(dest)
    target = dest / "london-face-set"
    if (target / "neutral").is_dir():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "london-face-set.zip.part"
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(archive, "wb") as out:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:  # URLError, HTTPError, timeouts, a full disk
        archive.unlink(missing_ok=True)
        raise OSError(
            f"could not download the London set from {url}: {exc}. Without internet access, "
            f"download doi:{LONDON_DOI} elsewhere, unpack it into <folder>/london-face-set and "
            "set MLRDIST_DATA=<folder>"
        ) from exc
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        archive.unlink()
        raise ValueError(f"checksum mismatch for {url}: got {digest.hexdigest()}, expected {sha256}")
    # unpack next to the target and rename at the end, so an interrupted unpack is never
    # mistaken for a complete set by the next call
    partial = dest / "london-face-set.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _safe_unzip(archive, partial)
        missing = [name for name in ("neutral", "smiling") if not (partial / name).is_dir()]
        if missing:
            found = sorted(p.name for p in partial.iterdir())
            raise ValueError(
                f"the archive from {url} has no {' or '.join(m + '/' for m in missing)} folder "
                f"(it holds {found}); unpack it by hand into london-face-set/ with neutral/ "
                "and smiling/ and set MLRDIST_DATA to the folder above it"
            )
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        archive.unlink(missing_ok=True)
    return target


def _safe_unzip(archive: Path, target: Path) -> None:
    """Unpack ``archive`` under ``target``, refusing members that would land outside it;
    nested zips (figshare wraps the set's folders) are unpacked in place."""
    root = target.resolve()
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            out = (root / member.filename).resolve()
            if not out.is_relative_to(root):
                raise ValueError(f"archive member {member.filename!r} escapes {target}")
            if member.is_dir():
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            if out.suffix == ".zip":
                _safe_unzip(out, out.parent)
                out.unlink()


def load_sample():
    """The packaged sample: 12 London subjects, neutral and smiling, as a faces dataset.

    Returns
    -------
    xarray.Dataset
        ``image(sample, y, x, channel)`` uint8 of shape (24, 128, 128, 3), coords ``subject``,
        ``expression``, ``source``, ``digest`` and the attrs of a faces.zarr (see
        :mod:`mlrdist.ingest`). Aligned on the eyes: template points for the neutral shots,
        registration to the neutral shot for the smiling ones.
    """
    import json

    import xarray as xr

    from .io.images import decode_array

    root = resources.files("mlrdist") / "data" / "sample"
    meta = json.loads((root / "sample.json").read_text())
    images, subjects, expressions, sources, digests = [], [], [], [], []
    for row in meta["images"]:
        images.append(decode_array((root / row["file"]).read_bytes(), "rgb"))
        subjects.append(row["subject"])
        expressions.append(row["expression"])
        sources.append(row["source"])
        digests.append(row["digest"])
    coords = {k: ("sample", np.array(v, dtype=object)) for k, v in
              (("subject", subjects), ("expression", expressions), ("source", sources), ("digest", digests))}
    ds = xr.Dataset({"image": (("sample", "y", "x", "channel"), np.stack(images))}, coords=coords)
    ds.attrs.update(meta["attrs"])
    return ds


def build_sample(london: str | Path, dest: str | Path, *, subjects=SAMPLE_SUBJECTS, size: int = 128) -> Path:
    """Rebuild the packaged sample from a local London set (maintainers only).

    Writes ``neutral/NNN.png``, ``smiling/NNN.png`` and ``sample.json`` (coords and attrs)
    under ``dest``; returns ``dest``. The smiling shot is registered to the neutral one, whose
    eyes come from its template; ``sample.json`` records each registration's correlation.
    """
    import json

    from . import __version__
    from .align import AlignSpec, align_image, read_tem, register_pair
    from .io.images import decode_image

    london, dest = Path(london), Path(dest)
    spec = AlignSpec(size=size)
    rows = []
    for sid in subjects:
        files = {"neutral": london / "neutral" / f"{sid}_03.jpg", "smiling": london / "smiling" / f"{sid}_08.jpg"}
        eyes = read_tem(london / "neutral" / f"{sid}_03.tem")[:2]
        imgs = {}
        for expr, path in files.items():
            dec = decode_image(path.read_bytes(), min_size=(4 * size, 4 * size))
            imgs[expr] = (dec.image, dec.scale)
        (n, sn), (m, sm) = imgs["neutral"], imgs["smiling"]
        moved, ncc = register_pair(n, m, eyes, ref_scale=sn, moving_scale=sm)
        for expr, im, sc, e, score in (("neutral", n, sn, eyes, 1.0), ("smiling", m, sm, moved, ncc)):
            out = dest / expr / f"{sid}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            align_image(im, e, spec, eye_scale=sc).save(out, optimize=True)
            rows.append({"file": f"{expr}/{sid}.png", "subject": sid, "expression": expr,
                         "source": f"doi:{LONDON_DOI}/{expr}/{files[expr].name}",
                         "digest": hashlib.sha256(files[expr].read_bytes()).hexdigest(),
                         "eyes": np.round(e, 2).tolist(), "registration_ncc": round(score, 4)})
    attrs = {"size": [size, size], "colour": "rgb", "alignment": spec.to_attrs("landmarks+registration"),
             "citation": LONDON_CITATION, "mlrdist_version": __version__}
    (dest / "sample.json").write_text(json.dumps({"attrs": attrs, "images": rows}, indent=1))
    return dest


def pairs(ds, source: str = "neutral", targets: tuple[str, ...] | str = ("smiling",)):
    """Training pairs by subject.

    Parameters
    ----------
    ds : xarray.Dataset
        A faces dataset (``image``, ``subject``, ``expression``).
    source : str
        Expression of the inputs.
    targets : str or tuple of str
        Expressions to predict; subjects lacking the source or any target are dropped.

    Returns
    -------
    X : ndarray, shape (n, H, W, C), uint8
    Y : dict of str -> ndarray, shape (n, H, W, C), uint8
    subjects : list of str, length n, in sorted order
    """
    from .labels import pair_indices

    targets = (targets,) if isinstance(targets, str) else tuple(targets)
    p = pair_indices(ds["subject"].values, ds["expression"].values, source, targets)
    image = ds["image"]
    X = np.asarray(image[p.source.tolist()].values)
    Y = {t: np.asarray(image[p.targets[j].tolist()].values) for j, t in enumerate(targets)}
    return X, Y, list(p.subjects)
