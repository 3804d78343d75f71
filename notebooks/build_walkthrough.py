"""Build notebooks/walkthrough.ipynb (cells below); `--execute` also runs it in place.

    python notebooks/build_walkthrough.py --execute
"""

import sys
from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent

CELLS = [
    ("md", """# mlrdist walkthrough: ingest → train → receptive fields → synthesize → evaluate

Masked linear regression (Khan et al., IJCV 2020) on the 12-subject London sample shipped with
the package (DeBruine & Jones 2017, CC BY 4.0). Every stage runs on a local Dask cluster and
reads and writes Zarr; point the URLs at `s3://...` and the scheduler at your cluster to run
the same code at scale."""),
    ("code", """import os
import tempfile
from importlib import resources

import matplotlib.pyplot as plt
import numpy as np
from distributed import Client, LocalCluster
from IPython.display import Image

import mlrdist

os.chdir(tempfile.mkdtemp(prefix="mlrdist-walkthrough-"))  # stores are written here
cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0")
client = Client(cluster)
print("Dask workers:", len(client.scheduler_info()["workers"]), "- dashboard at client.dashboard_link")"""),
    ("md", """## 1. Ingest

The sample is already aligned on the eyes at 128 × 128, so `align="none"`; labels come from the
file paths (`neutral/001.png`, `smiling/001.png`). Re-running adds nothing: images are
identified by content digest."""),
    ("code", """sample = resources.files("mlrdist") / "data" / "sample"
faces = "faces.zarr"
report = mlrdist.ingest_images(str(sample), faces, labels="sample", align="none", client=client)
print(f"{report.count('ingested')} images ingested, {report.count('skipped')} skipped; "
      f"the store holds {report.n_samples} samples")
again = mlrdist.ingest_images(str(sample), faces, labels="sample",
                              align="none", client=client)
print("second run ingested", again.count("ingested"), "images")"""),
    ("code", """from mlrdist.datasets import pairs
from mlrdist.io.faces_store import open_faces

ds = open_faces(faces)
X, Y, subjects = pairs(ds)
fig, axes = plt.subplots(2, 6, figsize=(12, 4.4))
for j in range(6):
    axes[0, j].imshow(X[j]); axes[0, j].set_title(f"{subjects[j]} neutral", fontsize=8)
    axes[1, j].imshow(Y["smiling"][j]); axes[1, j].set_title("smiling", fontsize=8)
for ax in axes.ravel():
    ax.axis("off")"""),
    ("md", """## 2. Train on Dask

Each tile of pixels is one Dask task that solves its pixels' ridge problems and writes its own
chunk of `weights.zarr`. Subjects 1–9 train; the last three are held out."""),
    ("code", """weights = "weights.zarr"
held_out = list(subjects[-3:])
train = mlrdist.fit_weights(faces, weights, receptive_field=5, alpha=0.4, client=client,
                            subjects=list(subjects[:-3]))
print(train.summary())
model = mlrdist.load_weights(weights)
model.coef_.shape  # (target, channel, y, x, feature)"""),
    ("md", """## 3. Receptive fields

Every pixel has its own 5 × 5 weights. Where they sum to 1 the input is copied; the mouth and
cheeks depart from that, and the intercept carries what the expression adds regardless of the
input (teeth, the shadow of a smile)."""),
    ("code", """coef = model.coef_[0, 0]            # red channel, (y, x, feature)
panels = [("sum of the 5x5 weights", coef.sum(axis=-1) - 1, "how far from copying the input"),
          ("intercept", model.intercept_[0, 0], "added regardless of the input")]
fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
for ax, (title, img, note) in zip(axes, panels):
    v = np.percentile(np.abs(img), 99)
    im = ax.imshow(img, cmap="RdBu_r", vmin=-v, vmax=v)
    ax.set_title(f"{title}\\n({note})", fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.046)
for ax, (y, x), name in zip(axes[2:], [(51, 45), (92, 64)], ["eye", "mouth"]):
    w = coef[y, x].reshape(5, 5)
    v = np.abs(w).max()
    im = ax.imshow(w, cmap="RdBu_r", vmin=-v, vmax=v)
    ax.set_title(f"weights at the {name}, pixel ({y}, {x})", fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.046)
for ax in axes:
    ax.axis("off")"""),
    ("md", "## 4. Synthesize the held-out faces"),
    ("code", """outputs = "outputs.zarr"
print(mlrdist.synthesize(weights, faces, outputs, client=client).summary())
import xarray as xr

out = xr.open_zarr(outputs, consolidated=False)
idx = [i for i, s in enumerate(ds["subject"].values) if s in held_out and ds["expression"].values[i] == "neutral"]
fig, axes = plt.subplots(3, len(idx), figsize=(2.6 * len(idx), 7.6))
for j, i in enumerate(idx):
    s = ds["subject"].values[i]
    axes[0, j].imshow(ds["image"].values[i]); axes[0, j].set_title(f"{s} input", fontsize=8)
    axes[1, j].imshow(out["image"].sel(target="smiling").values[i]); axes[1, j].set_title("MR", fontsize=8)
    axes[2, j].imshow(Y["smiling"][list(subjects).index(s)]); axes[2, j].set_title("real smile", fontsize=8)
for ax in axes.ravel():
    ax.axis("off")"""),
    ("md", """## 5. Evaluate against the paper's baselines

Subject-disjoint folds; MSE as in the paper, plus PSNR and SSIM."""),
    ("code", """from mlrdist.evaluate import default_methods, evaluate

result = evaluate(default_methods(["MR", "l2", "pcr", "kernel"]), X, Y, list(subjects), folds=3,
                  out_dir="evaluation")
for row in sorted(result.table(), key=lambda r: r["mse"]):
    print(f"{row['method']:>8}  MSE {row['mse']:.5f}  PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.3f}")
Image(filename=result.figures[sorted(result.figures)[0]])"""),
    ("code", """client.close()
cluster.close()"""),
]


def build() -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src) for kind, src in CELLS]
    return nb


def execute(nb: nbf.NotebookNode, timeout: int = 600) -> nbf.NotebookNode:
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    return nb


if __name__ == "__main__":
    notebook = build()
    if "--execute" in sys.argv:
        notebook = execute(notebook)
    nbf.write(notebook, HERE / "walkthrough.ipynb")
