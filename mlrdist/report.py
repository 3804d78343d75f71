"""Pictures and reports: comparison grids, receptive-field images, HTML/Markdown reports.

People look before they read: :func:`comparison_grid` (rows test subjects, columns
input | target | methods), :func:`application_grid` (no ground truth), :func:`weight_figure`
(what a masked model learned), and :func:`write_report` (``results.json``, ``report.md``
linking the PNGs, and a self-contained ``report.html`` with the PNGs inlined).
"""

from __future__ import annotations

import base64
import html
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from .scaling import scale_images, to_uint8

__all__ = [
    "InputsFailed",
    "Page",
    "SynthesisReport",
    "check_failures",
    "format_rate",
    "application_grid",
    "comparison_grid",
    "weight_figure",
    "write_figures",
    "write_report",
]


def format_rate(per_second: float, unit: str = "img/s") -> str:
    """A rate readable at any speed: '0.4 img/s', '12 img/s'."""
    return f"{per_second:.1f} {unit}" if per_second < 10 else f"{per_second:.0f} {unit}"


class InputsFailed(RuntimeError):
    """A run completed, but more inputs failed than it allows (``max_failed``)."""


def check_failures(failed: dict[str, str], attempted: int, max_failed: int | float = 0, what: str = "inputs") -> None:
    """Raise :class:`InputsFailed` when more of ``attempted`` inputs failed than allowed.

    Parameters
    ----------
    failed : dict of URL -> reason
    max_failed : int or float
        A count (0, 1, 2, ...), or a fraction of the attempted inputs in (0, 1).
    """
    if isinstance(max_failed, bool) or not isinstance(max_failed, int | float) or max_failed < 0:
        raise ValueError(f"max_failed must be a count >= 0 or a fraction in (0, 1), got {max_failed!r}")
    allowed = max_failed * attempted if 0 < max_failed < 1 else max_failed
    if len(failed) > allowed:
        url, reason = next(iter(failed.items()))
        limit = f"{max_failed:.0%} allowed" if 0 < max_failed < 1 else f"{int(max_failed)} allowed"
        raise InputsFailed(f"{len(failed)} of {attempted} {what} failed ({limit}); e.g. {url}: {reason}")


@dataclass
class SynthesisReport:
    """What a synthesis run did.

    ``failed`` maps an input URL to the reason it was not converted (it is tried again on the
    next run); ``no_face`` lists photos without a face (copied through or skipped, as asked);
    ``photos`` lists ``[url, faces found, faces converted]`` for every photo this run
    converted. ``converted`` counts converted inputs (photos or aligned faces).
    """

    outputs: str
    targets: list[str]
    n_inputs: int
    converted: int
    skipped_done: int
    failed: dict[str, str] = field(default_factory=dict)
    no_face: list[str] = field(default_factory=list)
    photos: list[list] = field(default_factory=list)
    faces_found: int = 0
    faces_converted: int = 0
    seconds: float = 0.0
    dashboard: str | None = None

    def add_photos(self, photos: list[tuple], failed: dict[str, str], no_face: list[str]) -> None:
        """Count one batch's photos: ``(url, relative path, faces, converted, box)`` each."""
        for url, _, found, converted, _ in photos:
            self.photos.append([url, found, converted])
            self.faces_found += found
            self.faces_converted += converted
        self.converted += len(photos)
        self.failed.update(failed)
        self.no_face += no_face

    def raise_if_failed(self, max_failed: int | float = 0) -> None:
        """Raise :class:`InputsFailed` when more inputs failed than ``max_failed`` allows."""
        check_failures(self.failed, self.n_inputs - self.skipped_done, max_failed)

    def summary(self) -> str:
        rate = self.converted / self.seconds if self.seconds else 0.0
        faces = (f"; {self.faces_converted} of {self.faces_found} faces converted"
                 if self.faces_found and self.faces_found != self.converted else "")
        return (
            f"synthesised {self.converted} of {self.n_inputs} inputs x {len(self.targets)} "
            f"target(s) into {self.outputs} ({self.skipped_done} already done, "
            f"{len(self.failed)} failed, {len(self.no_face)} without a face{faces}; {format_rate(rate)})"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[..., :3]


def _fit_text(draw, text: str, width: int) -> str:
    """``text`` shortened from the left (keeping its end, where file names differ) to fit."""
    text = str(text)
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength("…" + text) > width:
        text = text[1:]
    return "…" + text


def _label_sheet(cells: list[list[np.ndarray]], labels: list[str], cell: int, row_labels=None):
    """Compose rows of equally sized RGB uint8 cells under a header of column labels; a row's
    label is a caption line above the row, as wide as the row (never cut to a margin)."""
    from PIL import Image, ImageDraw

    head, gap = 18, 3
    caption = 16 if row_labels else 0
    cols = max(len(r) for r in cells)
    step = cell + gap
    row_h = caption + step
    sheet = Image.new("RGB", (cols * step, head + len(cells) * row_h), "white")
    draw = ImageDraw.Draw(sheet)
    for j, text in enumerate(labels):
        draw.text((j * step + 2, 3), _fit_text(draw, text, cell - 4), fill="black")
    for i, row in enumerate(cells):
        top = head + i * row_h
        if row_labels:
            draw.text((2, top + 2), _fit_text(draw, row_labels[i], cols * step - 4), fill=(60, 60, 60))
        for j, img in enumerate(row):
            small = img.shape[0] < cell // 2
            tile = Image.fromarray(_rgb(img)).resize((cell, cell), Image.NEAREST if small else Image.BICUBIC)
            sheet.paste(tile, (j * step, top + caption))
    return sheet


def comparison_grid(inputs, targets, preds: dict[str, np.ndarray], row_labels, path, cell: int = 128) -> None:
    """PNG grid: rows subjects, columns input | target | one per method.

    ``inputs``, ``targets``, each ``preds[m]``: uint8 ``(rows, H, W, C)``.
    """
    labels = ["input", "target", *preds]
    cells = [[inputs[i], targets[i], *(p[i] for p in preds.values())] for i in range(len(inputs))]
    _label_sheet(cells, labels, cell, row_labels).save(path)


def application_grid(inputs, preds: dict[str, np.ndarray], row_labels, path, cell: int = 128) -> None:
    """PNG grid without ground truth: rows images, columns input | one per method.

    ``inputs``, each ``preds[m]``: uint8 ``(rows, H, W, C)``.
    """
    cells = [[inputs[i], *(p[i] for p in preds.values())] for i in range(len(inputs))]
    _label_sheet(cells, ["input", *preds], cell, row_labels).save(path)


def _diverging(a: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Blue (negative) - white - red (positive), symmetric at ``scale`` (default: the 99th
    percentile of ``|a|``)."""
    s = scale or float(np.percentile(np.abs(a), 99)) or 1.0
    v = np.clip(a / s, -1, 1)[..., None]
    pos, neg = np.array([1.0, 0.2, 0.1]), np.array([0.1, 0.3, 1.0])
    rgb = np.where(v >= 0, 1 - v * (1 - pos), 1 + v * (1 - neg))
    return (rgb * 255 + 0.5).astype(np.uint8)


def weight_figure(est: Any, path, target: int = 0, channel: int = 0, cell: int = 160) -> None:
    """Receptive-field images of a fitted MaskedRidge: centre-weight, window-sum and
    intercept maps, then the ``k x k`` weights at five pixels (eyes, nose, mouth corners)."""
    coef, b = np.asarray(est.coef_)[target, channel], np.asarray(est.intercept_)[target, channel]
    H, W, F = coef.shape
    k = int(est.receptive_field)
    C = F // (k * k)
    win = coef.reshape(H, W, k * k, C)[..., min(channel, C - 1)] if C > 1 else coef
    spots = [(0.40, 0.33), (0.40, 0.67), (0.58, 0.50), (0.75, 0.38), (0.75, 0.62)]
    pix = [(min(int(fy * H), H - 1), min(int(fx * W), W - 1)) for fy, fx in spots]
    maps = [("centre weight", win[..., k * k // 2]), ("window sum", win.sum(-1)), ("intercept", b)]
    scale = float(np.percentile(np.abs(win), 99)) or 1.0
    cells = [[_diverging(m) for _, m in maps] + [_diverging(win[y, x].reshape(k, k), scale) for y, x in pix]]
    maps += [(f"{k}x{k} @{y},{x}", None) for y, x in pix]
    _label_sheet(cells, [m for m, _ in maps], cell).save(path)


def write_figures(result, X, Y, shown_idx, grids, fitted, out_dir) -> dict[str, str]:
    """Comparison grid per target and weight images per masked ridge method; returns paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = to_uint8(scale_images(X[shown_idx], "unit", np.float32))
    figs = {}
    cell = max(96, min(160, X.shape[1]))
    for t, y in Y.items():
        targets = to_uint8(scale_images(y[shown_idx], "unit", np.float32))
        path = out / f"grid_{_slug(t)}.png"
        comparison_grid(inputs, targets, {m: g[t] for m, g in grids.items()}, result.info["grid_subjects"], path, cell)
        figs[f"grid {t}"] = str(path)
    for m, est in fitted.items():
        if type(est).__name__ == "MaskedRidge":
            path = out / f"weights_{_slug(m)}.png"
            weight_figure(est, path)
            figs[f"weights {m}"] = str(path)
    return figs


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(s))


# -- pages -------------------------------------------------------------------------------


@dataclass
class Page:
    """A report page built from blocks, written as Markdown (linking the PNGs) and as one
    self-contained HTML file (PNGs inlined, from the template ``templates/page.html``)."""

    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, text: str) -> Page:
        self.blocks.append(("h2", text))
        return self

    def text(self, text: str) -> Page:
        self.blocks.append(("p", text))
        return self

    def items(self, lines: list[str]) -> Page:
        if lines:
            self.blocks.append(("ul", list(lines)))
        return self

    def table(self, head: list[str], rows: list[list[str]]) -> Page:
        self.blocks.append(("table", list(head), [list(r) for r in rows]))
        return self

    def image(self, title: str, path: str | Path, caption: str = "") -> Page:
        self.blocks.append(("img", title, Path(path), caption))
        return self

    def to_markdown(self, base: Path) -> str:
        md = [f"# {self.title}"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h2":
                md += ["", f"## {block[1]}"]
            elif kind == "p":
                md += ["", block[1]]
            elif kind == "ul":
                md += [""] + [f"- {line}" for line in block[1]]
            elif kind == "table":
                head, rows = block[1], block[2]
                md += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                md += ["| " + " | ".join(r) + " |" for r in rows]
            elif kind == "img":
                md += ["", f"![{block[1]}]({_relative(block[2], base)})"] + ([f"*{block[3]}*"] if block[3] else [])
        return "\n".join(md) + "\n"

    def to_html(self) -> str:
        e = html.escape
        body = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h2":
                body.append(f"<h2>{e(block[1])}</h2>")
            elif kind == "p":
                body.append(f"<p>{e(block[1])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in block[1]) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{e(h)}</th>" for h in block[1])
                rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in block[2])
                body.append(f"<table><tr>{head}</tr>{rows}</table>")
            elif kind == "img":
                data = base64.b64encode(block[2].read_bytes()).decode()
                kind_ = "jpeg" if block[2].suffix.lower() in (".jpg", ".jpeg") else "png"
                cap = f"<figcaption>{e(block[3])}</figcaption>" if block[3] else ""
                body.append(f"<figure><img alt='{e(block[1])}' src='data:image/{kind_};base64,{data}'>{cap}</figure>")
        return _TEMPLATE().substitute(title=e(self.title), body="\n".join(body))

    def write(self, out_dir: str | Path, name: str = "report") -> dict[str, Path]:
        """Write ``{name}.md`` and ``{name}.html`` into ``out_dir``; returns their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"md": out / f"{name}.md", "html": out / f"{name}.html"}
        paths["md"].write_text(self.to_markdown(out))
        paths["html"].write_text(self.to_html())
        return paths


def _TEMPLATE() -> Template:
    from importlib import resources

    return Template((resources.files("mlrdist") / "templates" / "page.html").read_text())


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


# -- the evaluation report -------------------------------------------------------------
_COLS = [("MSE", "mse", "{:.5f}"), ("PSNR dB", "psnr", "{:.2f}"), ("SSIM", "ssim", "{:.4f}"),
         ("detail kept", "detail", "{:.2f}")]


def _rows_text(result: Any) -> tuple[list[str], list[list[str]]]:
    head = ["method", "target", *(c for c, _, _ in _COLS), "parameters", "fit s", "peak MiB"]
    rows = []
    for r in result.table():
        cells = [r["method"], r["target"]]
        cells += [f"{fmt.format(r[k])} ± {fmt.format(r[k + '_std'])}" for _, k, fmt in _COLS]
        n = r["n_parameters"]
        cells += [f"{n:,}" if n is not None else "?", f"{r['fit_seconds']:.2f}", f"{r['peak_memory_bytes'] / 2**20:.0f}"]
        rows.append(cells)
    return head, rows


def write_report(result: Any, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``report.md`` and a self-contained ``report.html`` of an
    :class:`~mlrdist.evaluate.EvaluationResult`.

    Returns
    -------
    dict of str -> Path
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = _collect_figures(result.figures, out)
    head, rows = _rows_text(result)
    info = result.info
    page = Page("Method comparison").text(
        f"{info.get('n_pairs')} pairs of {info.get('n_subjects')} subjects, images "
        f"{info.get('image_shape')}, {info.get('n_folds')}-fold subject-disjoint cross-validation "
        f"(seed {info.get('seed')}); metrics on [0, 1] images, mean ± std over folds. "
        f"Memory: {info.get('memory')}."
    ).table(head, rows)
    for m, e in result.errors.items():
        page.text(f"{m} not run: {e}")
    for m, r in result.resources.items():
        if r.get("chosen_params"):
            page.text(f"{m} hyper-parameters chosen per fold (inner CV): {r['chosen_params']}")
    for title, path in figures.items():
        page.heading(title).image(title, path)
    paths = page.write(out)
    paths["json"] = out / "results.json"
    paths["json"].write_text(json.dumps(result.to_dict(), indent=1, default=str))
    return paths


def _collect_figures(figures: dict[str, str], out: Path) -> dict[str, Path]:
    """Copy figures written elsewhere into ``out``; return title -> path in ``out``."""
    names = {}
    for title, path in figures.items():
        src = Path(path)
        if src.resolve().parent != out.resolve():
            shutil.copyfile(src, out / src.name)
        names[title] = out / src.name
    return names
