"""Static checks of the deployment files under infra/ (no Docker daemon or cluster needed).

The YAML files are parsed and their wiring is cross-checked: service names used in addresses,
the scheduler address the Prefect worker gets, ConfigMap/Secret references, the image, the
non-root user. ``docker-compose config`` (or ``docker compose config``) also validates the
compose file when such a binary is on PATH.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "compose" / "docker-compose.yml"
ENV_EXAMPLE = INFRA / "compose" / ".env.example"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
DOCKERIGNORE = INFRA / "docker" / "Dockerfile.dockerignore"
K8S = INFRA / "k8s"

COMPOSE_SERVICES = {
    "postgres", "prefect-server", "minio", "minio-init", "dask-scheduler", "dask-worker",
    "prefect-worker",
}
BUILT_SERVICES = {"dask-scheduler", "dask-worker", "prefect-worker"}
K8S_NON_MANIFESTS = {"helm-values-dask.yaml"}

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<default>[^}]*)\}")


@pytest.fixture(scope="module")
def yaml():
    return pytest.importorskip("yaml")


def _load_all(yaml, path: Path) -> list:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


# --------------------------------------------------------------------------- helpers


def _interpolate(value, env: dict[str, str] | None = None):
    """Compose-style ``${VAR:-default}`` substitution (``$$`` is a literal ``$``)."""
    env = env or {}
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value
    text = value.replace("$$", "\0")
    text = _VAR.sub(lambda m: env.get(m["name"]) or (m["default"] if m["op"] else ""), text)
    return text.replace("\0", "$")


def _env_dict(environment) -> dict[str, str]:
    if environment is None:
        return {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {k: "" if v is None else str(v) for k, v in environment.items()}


def _command(service: dict) -> list[str]:
    cmd = service.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _parse_bytes(text: str) -> int:
    """``4GiB``, ``4608Mi``, ``2G`` -> bytes (Dask and Kubernetes spellings)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGTP]?)(i?)B?\s*", str(text))
    assert m, f"cannot parse a memory size from {text!r}"
    base = 1024 if m[3] else 1000
    return int(float(m[1]) * base ** " KMGTP".index(m[2] or " "))


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return out


def _k8s_docs(yaml) -> dict[str, list[dict]]:
    return {
        p.name: _load_all(yaml, p) for p in sorted(K8S.glob("*.y*ml")) if p.name not in K8S_NON_MANIFESTS
    }


def _one(docs: dict[str, list[dict]], kind: str) -> dict:
    found = [d for ds in docs.values() for d in ds if d.get("kind") == kind]
    assert len(found) == 1, f"expected exactly one {kind}, found {len(found)}"
    return found[0]


def _pod_specs(docs: dict[str, list[dict]]) -> dict[str, dict]:
    cluster = _one(docs, "DaskCluster")
    deployment = _one(docs, "Deployment")
    return {
        "dask-scheduler": cluster["spec"]["scheduler"]["spec"],
        "dask-worker": cluster["spec"]["worker"]["spec"],
        "prefect-worker": deployment["spec"]["template"]["spec"],
    }


def _dockerfile_uid() -> str:
    users = [args for word, args in _dockerfile_instructions() if word == "USER"]
    assert users, "the Dockerfile never switches away from root"
    return users[-1].split(":")[0]


# --------------------------------------------------------------------------- all YAML


def test_every_yaml_file_parses(yaml):
    paths = sorted(INFRA.rglob("*.yaml")) + sorted(INFRA.rglob("*.yml"))
    assert COMPOSE in paths and len(paths) >= 7
    for path in paths:
        docs = _load_all(yaml, path)
        assert docs, f"{path} holds no YAML document"
        assert all(isinstance(d, dict) for d in docs), f"{path}: every document must be a mapping"


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose(yaml) -> dict:
    return _load_all(yaml, COMPOSE)[0]


@pytest.fixture(scope="module")
def services(compose) -> dict:
    """Services with every ``${VAR:-default}`` replaced by its default."""
    return _interpolate(compose["services"])


def test_compose_has_every_service_and_a_version_v1_understands(compose):
    assert COMPOSE_SERVICES <= set(compose["services"])
    # docker-compose 1.x reads a file without `version` as the legacy v1 format.
    assert str(compose.get("version")).startswith("3.")


def test_compose_images_and_build(services):
    assert services["postgres"]["image"] == "postgres:16"
    assert services["prefect-server"]["image"].startswith("prefecthq/prefect:3")
    assert services["minio"]["image"].startswith("minio/minio")
    assert services["minio-init"]["image"].startswith("minio/mc")
    images = {services[name]["image"] for name in BUILT_SERVICES}
    assert len(images) == 1, f"the Dask and Prefect workers must share one image, got {images}"
    for name in BUILT_SERVICES:
        build = services[name]["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT, f"{name}: the build context must be the repository root"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_dask_worker_points_at_the_scheduler_service(services):
    sched = _command(services["dask-scheduler"])
    assert sched[:2] == ["dask", "scheduler"]
    port = sched[sched.index("--port") + 1]
    worker = _command(services["dask-worker"])
    assert worker[:2] == ["dask", "worker"]
    assert f"tcp://dask-scheduler:{port}" in worker
    assert worker[worker.index("--nthreads") + 1] == "1"
    assert worker[worker.index("--nworkers") + 1] == "1"
    assert _parse_bytes(worker[worker.index("--memory-limit") + 1]) == 4 * 2**30
    assert services["dask-worker"]["deploy"]["replicas"] == 2
    assert {"8786", "8787"} <= {p.split(":")[-1] for p in services["dask-scheduler"]["ports"]}


def test_compose_prefect_server_uses_postgres(services):
    server = services["prefect-server"]
    cmd = " ".join(_command(server))
    assert "prefect server start" in cmd and "--host 0.0.0.0" in cmd
    env = _env_dict(server["environment"])
    url = env["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url
    pg = _env_dict(services["postgres"]["environment"])
    assert url.endswith(f"://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}")
    assert "postgres" in server["depends_on"]
    assert any(p.endswith(":4200:4200") for p in server["ports"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])


def test_compose_prefect_worker_environment(compose, services):
    worker = services["prefect-worker"]
    cmd = _command(worker)
    assert cmd[:3] == ["prefect", "worker", "start"]
    assert cmd[cmd.index("--pool") + 1] == "mlrdist-process"
    assert cmd[cmd.index("--type") + 1] == "process"
    env = _env_dict(worker["environment"])
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["MLRDIST_SCHEDULER"] == "tcp://dask-scheduler:8786"
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert {"prefect-server", "dask-scheduler", "minio-init"} <= set(worker["depends_on"])


def test_compose_s3_credentials_are_minios_and_come_from_env(compose, services):
    raw_minio = _env_dict(compose["services"]["minio"]["environment"])
    for var in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        assert raw_minio[var].startswith(f"${{{var}:-"), f"{var} must come from the environment"
    minio = _env_dict(services["minio"]["environment"])
    for name in ("dask-worker", "prefect-worker"):
        env = _env_dict(services[name]["environment"])
        assert env["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"], name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000", name
    # Overriding the variable reaches MinIO and the workers alike.
    over = _interpolate(compose["services"], {"MINIO_ROOT_PASSWORD": "s3cr3t-pw"})
    assert _env_dict(over["minio"]["environment"])["MINIO_ROOT_PASSWORD"] == "s3cr3t-pw"
    assert _env_dict(over["dask-worker"]["environment"])["AWS_SECRET_ACCESS_KEY"] == "s3cr3t-pw"


def test_compose_minio_and_its_buckets(services):
    minio = services["minio"]
    assert _command(minio)[:2] == ["server", "/data"]
    assert "--console-address" in _command(minio)
    assert {"9000", "9001"} <= {p.split(":")[-1] for p in minio["ports"]}
    init = services["minio-init"]
    script = " ".join(_command(init))
    assert "mc mb" in script and "http://minio:9000" in script
    buckets = _env_dict(init["environment"])["MINIO_BUCKETS"].split()
    assert {"faces", "weights", "outputs"} <= set(buckets)


def test_compose_variables_have_defaults_and_are_documented(compose):
    text = COMPOSE.read_text().replace("$$", "")
    used = {m["name"]: m["op"] for m in _VAR.finditer(text)}
    assert {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "POSTGRES_PASSWORD"} <= set(used)
    assert not [n for n, op in used.items() if op != ":-"], "every variable needs a ${VAR:-default}"
    documented = {
        line.split("=", 1)[0].strip()
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    assert set(used) == documented, "infra/compose/.env.example and the compose file disagree"
    # Published ports are bound to an address the user chooses, loopback by default.
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("${BIND_ADDRESS:-127.0.0.1}:"), (name, port)


def _compose_binary() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_compose_config_validates_with_the_real_tool(yaml, tmp_path):
    binary = _compose_binary()
    if binary is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is on PATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "POSTGRES_", "DASK_"))}
    base = [*binary, "-f", str(COMPOSE)]
    for extra in ([], ["--env-file", str(ENV_EXAMPLE)]):
        cmd = [*base[:-2], *extra, *base[-2:], "config"]
        quiet = subprocess.run([*cmd, "-q"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        assert quiet.returncode == 0, quiet.stderr
    full = subprocess.run([*cmd], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert full.returncode == 0, full.stderr
    resolved = yaml.safe_load(full.stdout)["services"]
    assert COMPOSE_SERVICES <= set(resolved)
    assert resolved["prefect-worker"]["environment"]["MLRDIST_SCHEDULER"] == "tcp://dask-scheduler:8786"


# --------------------------------------------------------------------------- Kubernetes


def test_k8s_documents_are_kubernetes_objects_in_the_namespace(yaml):
    docs = _k8s_docs(yaml)
    assert {"namespace.yaml", "configmap.yaml", "secret.example.yaml"} <= set(docs)
    namespace = _one(docs, "Namespace")["metadata"]["name"]
    for name, items in docs.items():
        for doc in items:
            assert {"apiVersion", "kind"} <= set(doc), name
            if doc["kind"] == "Kustomization":
                continue
            assert doc["metadata"]["name"], name
            if doc["kind"] != "Namespace":
                assert doc["metadata"].get("namespace") == namespace, f"{name}: {doc['kind']}"


def test_k8s_kustomization_lists_the_manifests_but_not_the_secret_example(yaml):
    kustomization = _one(_k8s_docs(yaml), "Kustomization")
    resources = set(kustomization["resources"])
    assert all((K8S / r).is_file() for r in resources)
    manifests = {p.name for p in K8S.glob("*.yaml")} - K8S_NON_MANIFESTS
    assert resources == manifests - {"kustomization.yaml", "secret.example.yaml"}


def test_k8s_daskcluster(yaml):
    cluster = _one(_k8s_docs(yaml), "DaskCluster")
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    spec = cluster["spec"]
    assert spec["worker"]["replicas"] == 4
    (worker,) = spec["worker"]["spec"]["containers"]
    (scheduler,) = spec["scheduler"]["spec"]["containers"]
    assert worker["image"] == scheduler["image"] and "/" in worker["image"] and ":" in worker["image"]
    assert worker["args"][:2] == ["dask", "worker"] and "$(DASK_WORKER_NAME)" in worker["args"]
    assert scheduler["args"][:2] == ["dask", "scheduler"]
    assert worker["args"][worker["args"].index("--nthreads") + 1] == "1"
    dask_limit = _parse_bytes(worker["args"][worker["args"].index("--memory-limit") + 1])
    resources = worker["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
    assert dask_limit <= _parse_bytes(resources["limits"]["memory"]), "Dask must hit its limit before the OOM killer"
    assert dask_limit >= 3 * 10**9, "a 1024x1024 colour k=7 tile needs about 3 GB"
    assert {"requests", "limits"} <= set(scheduler["resources"])
    # The operator looks the scheduler up by these port names.
    assert {p["name"] for p in scheduler["ports"]} >= {"tcp-comm", "http-dashboard"}
    service = spec["scheduler"]["service"]
    assert service["selector"]["dask.org/cluster-name"] == cluster["metadata"]["name"]
    assert {p["port"] for p in service["ports"]} == {8786, 8787}


def test_k8s_autoscaler_targets_the_cluster(yaml):
    docs = _k8s_docs(yaml)
    scaler = _one(docs, "DaskAutoscaler")
    assert scaler["apiVersion"] == "kubernetes.dask.org/v1"
    assert scaler["spec"]["cluster"] == _one(docs, "DaskCluster")["metadata"]["name"]
    assert (scaler["spec"]["minimum"], scaler["spec"]["maximum"]) == (2, 20)


def test_k8s_prefect_worker_wiring(yaml):
    docs = _k8s_docs(yaml)
    cluster = _one(docs, "DaskCluster")
    deployment = _one(docs, "Deployment")
    configmap = _one(docs, "ConfigMap")
    secret = _one(docs, "Secret")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == cluster["spec"]["worker"]["spec"]["containers"][0]["image"]
    args = container["args"]
    assert args[:3] == ["prefect", "worker", "start"] and args[args.index("--pool") + 1] == "mlrdist-process"
    env = {e["name"]: e for e in container["env"]}
    name, ns = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    # The operator names the scheduler Service "<cluster>-scheduler".
    assert env["MLRDIST_SCHEDULER"]["value"] == f"tcp://{name}-scheduler.{ns}.svc.cluster.local:8786"
    api = env["PREFECT_API_URL"]["valueFrom"]["configMapKeyRef"]
    assert api["name"] == configmap["metadata"]["name"] and api["key"] in configmap["data"]
    assert configmap["data"]["PREFECT_API_URL"].endswith("/api")
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret_keys
    for e in env.values():  # every other reference resolves or is optional
        for kind, doc in (("configMapKeyRef", configmap), ("secretKeyRef", secret)):
            ref = e.get("valueFrom", {}).get(kind)
            if ref and not ref.get("optional"):
                assert ref["name"] == doc["metadata"]["name"], e["name"]
    # The Dask workers read the same ConfigMap and Secret.
    env_from = cluster["spec"]["worker"]["spec"]["containers"][0]["envFrom"]
    refs = {(k, v["name"]) for item in env_from for k, v in item.items()}
    assert refs == {("configMapRef", configmap["metadata"]["name"]), ("secretRef", secret["metadata"]["name"])}


def test_k8s_secret_example_holds_only_placeholders(yaml):
    secret = _one(_k8s_docs(yaml), "Secret")
    values = secret["stringData"]
    assert values and all("REPLACE_ME" in v for v in values.values())
    assert "EXAMPLE" in (K8S / "secret.example.yaml").read_text().splitlines()[0].upper()


def test_k8s_pods_run_as_the_images_non_root_user(yaml):
    uid = int(_dockerfile_uid())
    for name, pod in _pod_specs(_k8s_docs(yaml)).items():
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == uid, name
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert "ALL" in container["securityContext"]["capabilities"]["drop"], name


def test_helm_values_alternative(yaml):
    (values,) = _load_all(yaml, K8S / "helm-values-dask.yaml")
    cluster = _one(_k8s_docs(yaml), "DaskCluster")
    image = cluster["spec"]["worker"]["spec"]["containers"][0]["image"]
    for part in ("scheduler", "worker"):
        img = values[part]["image"]
        assert f"{img['repository']}:{img['tag']}" == image
    assert values["worker"]["threads_per_worker"] == 1
    assert values["jupyter"]["enabled"] is False


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_image_and_install():
    instructions = _dockerfile_instructions()
    froms = [args for word, args in instructions if word == "FROM"]
    assert froms and froms[0].split()[0] == "python:3.11-slim"
    image, _, tag = froms[0].split()[0].partition(":")
    assert (image, tag) == ("python", "3.11-slim")
    words = [word for word, _ in instructions]
    installs = [
        i for i, (word, args) in enumerate(instructions)
        if word == "RUN" and any(
            seg[:2] == ["pip", "install"] and ".[all]" in seg
            for seg in (shlex.split(s) for s in args.split("&&"))
        )
    ]
    assert installs, 'no RUN pip install ".[all]"'
    copies_all = [i for i, (word, args) in enumerate(instructions) if word == "COPY" and args.split()[0] == "."]
    assert copies_all and copies_all[0] < installs[0], "the source must be copied before it is installed"
    assert "HEALTHCHECK" not in words
    # Every other COPY source exists in the build context (the repository root).
    for word, args in instructions:
        if word == "COPY" and not args.startswith("--from"):
            for src in args.split()[:-1]:
                if not src.startswith("--") and src != ".":
                    assert (ROOT / src).exists(), f"COPY source {src} is missing"


def test_dockerfile_runs_as_non_root_with_a_fixed_uid():
    instructions = _dockerfile_instructions()
    uid = _dockerfile_uid()
    assert uid not in {"root", "0"} and uid.isdigit()
    assert any(word == "RUN" and f"--uid {uid}" in args for word, args in instructions)
    users = [i for i, (word, _) in enumerate(instructions) if word == "USER"]
    entry = [i for i, (word, _) in enumerate(instructions) if word in {"ENTRYPOINT", "CMD"}]
    assert max(users) < min(entry) and not any(w == "RUN" for w, _ in instructions[max(users):])


def test_dockerfile_environment():
    env_text = " ".join(args for word, args in _dockerfile_instructions() if word == "ENV")
    env = dict(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", env_text))
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PYTHONUNBUFFERED"] == "1"
    # prefect.yaml's pull step runs flows from $MLRDIST_HOME: the image must set it.
    prefect_yaml = ROOT / "prefect.yaml"
    if prefect_yaml.exists() and "MLRDIST_HOME" in prefect_yaml.read_text():
        assert env["MLRDIST_HOME"] == "/opt/mlrdist"
        assert any(w == "COPY" and a.split()[-1] == env["MLRDIST_HOME"] for w, a in _dockerfile_instructions())


def test_dockerignore_excludes_local_state():
    patterns = {
        line.strip().removeprefix("**/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "*.zarr", "benchmarks/results"} <= patterns
    assert not {"pyproject.toml", "mlrdist", "flows", "prefect.yaml", "infra"} & patterns


def test_requirements_helper_matches_pyproject():
    import tomllib

    spec = importlib.util.spec_from_file_location("pyproject_requirements", INFRA / "docker" / "pyproject_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = module.requirements(pyproject, ["all"])
    project = pyproject["project"]
    assert set(project["dependencies"]) <= set(reqs)
    for extra in ("distributed", "s3", "flows"):
        assert set(project["optional-dependencies"][extra]) <= set(reqs), extra
    assert not [r for r in reqs if r.replace("_", "-").lower().startswith(project["name"] + "[")]
    assert len(reqs) == len(set(reqs))
