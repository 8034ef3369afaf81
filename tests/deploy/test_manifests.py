"""The deployment manifests, validated without Docker or a cluster.

docker-compose.yml is checked against the Compose Specification's JSON schema and every manifest in
deploy/k8s/ against the Kubernetes JSON schemas (strict: unknown fields fail), then a few things no schema
says: health checks, scalability, no hard-coded secrets, resources and probes, the settings' names.

Where the schemas come from (nothing is committed here): two PyPI packages, pinned with their hashes,
fetched once with `pip download --no-deps` into $FLYWHEEL_CACHE/schemas (default ~/.cache/flywheel/schemas)
and read straight out of the wheel:
  - check-jsonschema vendors the Compose Specification schema (compose-spec.json, JSON Schema 2020-12);
  - kubernetes-validate ships the Kubernetes API schemas per release, in a strict variant.
When the download is impossible the tests fail and say why; they never skip.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_ENV_EXAMPLE = REPO / "deploy" / "compose.env.example"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / "deploy" / "docker" / "Dockerfile.dockerignore"
K8S_DIR = REPO / "deploy" / "k8s"
KUSTOMIZATION = K8S_DIR / "kustomization.yaml"
SECRET_TEMPLATE = K8S_DIR / "secret.example.yaml"

# (PyPI name, version, sha256 of the wheel). Bump version and hash together.
COMPOSE_SCHEMA_WHEEL = (
    "check-jsonschema",
    "0.39.0",
    "14ce5c94871c551268ea948ffe21e9f1464dc48fb20bf9a4c13deeaaf756cf9b",
)
COMPOSE_SCHEMA_MEMBER = "check_jsonschema/builtin_schemas/vendor/compose-spec.json"
K8S_SCHEMA_WHEEL = (
    "kubernetes-validate",
    "1.37.0",
    "85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9",
)
K8S_SCHEMA_DIR = "kubernetes_validate/kubernetes-json-schema/v{version}-local-strict"
# The oldest Kubernetes release the manifests promise to work on, and the newest the package knows.
K8S_VERSIONS = ("1.30.0", "1.37.0")

FLYWHEEL_PROCESSES = {  # compose service -> its command
    "capture": ["capture"],
    "labeler": ["labeler"],
    "annotation": ["annotate", "serve"],
    "serve": ["serve"],
}
HTTP_PROCESSES = {"annotation", "serve"}  # the ones that answer /healthz on 8080
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|API_KEY|ACCESS_KEY|CREDENTIAL|TOKEN|IDENTITY)", re.IGNORECASE)
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")
URL_PASSWORD = re.compile(r"://[^/\s:@]+:(?P<password>[^@\s]+)@")
PLACEHOLDER = "change-me"


# ---------------------------------------------------------------------------------------------- schemas


def _cache_dir() -> Path:
    return Path(os.environ.get("FLYWHEEL_CACHE") or Path.home() / ".cache" / "flywheel") / "schemas"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_DOWNLOAD_FAILURES: dict[str, str] = {}  # a failed download fails every later test at once, without retrying


def _fail_download(name: str, message: str) -> NoReturn:
    _DOWNLOAD_FAILURES[name] = message
    pytest.fail(message, pytrace=False)


@functools.cache
def _wheel(name: str, version: str, sha256: str) -> Path:
    """The wheel of name==version from PyPI (cached, hash-checked); fails the test when it can't be had."""
    if name in _DOWNLOAD_FAILURES:
        pytest.fail(_DOWNLOAD_FAILURES[name], pytrace=False)
    cache = _cache_dir()
    target = cache / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    if target.exists() and _sha256(target) == sha256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--no-input", "--dest", tmp, f"{name}=={version}",
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _fail_download(name, f"could not run pip to download the schema package {name}=={version}: {exc}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            _fail_download(
                name,
                f"could not download the schema package {name}=={version} from PyPI into {cache} "
                f"(the manifests cannot be validated without it).\n$ {' '.join(command)}\n"
                f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}",
            )
        got = _sha256(wheels[0])
        if got != sha256:
            _fail_download(
                name,
                f"{wheels[0].name} from PyPI has sha256 {got}, expected {sha256}: "
                "refusing schemas that are not the pinned ones",
            )
        os.replace(wheels[0], target)  # atomic: a concurrent run sees the whole file or none
    return target


def _read_json(wheel: Path, member: str) -> Any:
    with zipfile.ZipFile(wheel) as archive:
        try:
            return json.loads(archive.read(member))
        except KeyError:
            pytest.fail(f"{wheel.name} has no {member}: the package changed its layout", pytrace=False)


@functools.cache
def compose_validator() -> jsonschema.protocols.Validator:
    schema = _read_json(_wheel(*COMPOSE_SCHEMA_WHEEL), COMPOSE_SCHEMA_MEMBER)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@functools.cache
def _k8s_registry(version: str) -> tuple[Registry, str]:
    wheel = _wheel(*K8S_SCHEMA_WHEEL)
    folder = K8S_SCHEMA_DIR.format(version=version)
    definitions = _read_json(wheel, f"{folder}/_definitions.json")
    return Resource.from_contents(definitions) @ Registry(), folder


def k8s_validator(version: str, api_version: str, kind: str) -> jsonschema.protocols.Validator:
    """The strict schema of one kind, as kubernetes-validate names its files (group without domain)."""
    registry, folder = _k8s_registry(version)
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    member = f"{folder}/{kind.lower()}-{group_version}.json"
    with zipfile.ZipFile(_wheel(*K8S_SCHEMA_WHEEL)) as archive:
        if member not in archive.namelist():
            pytest.fail(f"Kubernetes {version} has no schema for {kind} {api_version} ({member})", pytrace=False)
        schema = json.loads(archive.read(member))
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _errors(validator: jsonschema.protocols.Validator, instance: Any) -> list[str]:
    found = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    lines = []
    for error in found:
        best = jsonschema.exceptions.best_match([error])
        lines.append(f"  at {best.json_path}: {best.message[:400]}")
    return lines


# ---------------------------------------------------------------------------------------------- loading


@functools.cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), f"{COMPOSE_FILE} is not a mapping"
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def env_example() -> dict[str, str]:
    values = {}
    for line in COMPOSE_ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{COMPOSE_ENV_EXAMPLE}: not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    return values


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.y*ml") if p.name != KUSTOMIZATION.name)


@functools.cache
def k8s_documents(path: Path) -> tuple[dict[str, Any], ...]:
    docs = tuple(doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None)
    assert docs, f"{path} holds no document"
    return docs


def k8s_objects(kind: str | None = None) -> list[dict[str, Any]]:
    return [
        doc
        for path in k8s_files()
        if path != SECRET_TEMPLATE
        for doc in k8s_documents(path)
        if kind is None or doc.get("kind") == kind
    ]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in k8s_objects(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} named {name} in {K8S_DIR}, found {len(found)}"
    return found[0]


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) of every Deployment and CronJob."""
    specs = [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in k8s_objects("Deployment")]
    specs += [
        (c["metadata"]["name"], c["spec"]["jobTemplate"]["spec"]["template"]["spec"]) for c in k8s_objects("CronJob")
    ]
    return specs


def settings_classes() -> list[type[Any]]:
    """The pydantic-settings classes of services/settings.py with a prefix of their own (FLYWHEEL_KAFKA_, ...)."""
    from pydantic_settings import BaseSettings

    import flywheel_feedback.services.settings as module

    return [
        cls
        for cls in vars(module).values()
        if isinstance(cls, type)
        and issubclass(cls, BaseSettings)
        and cls.__module__ == module.__name__
        and len(str(cls.model_config.get("env_prefix", ""))) > len("FLYWHEEL_")
    ]


def settings_env_names() -> dict[str, set[str]]:
    """The environment variables services/settings.py reads, per prefix (FLYWHEEL_KAFKA_ -> {...})."""
    names: dict[str, set[str]] = {}
    for cls in settings_classes():
        prefix = str(cls.model_config["env_prefix"])
        names.setdefault(prefix, set()).update(f"{prefix}{field}".upper() for field in cls.model_fields)
    return names


def webhook_path() -> str:
    """The path the webhook receiver answers (its settings' default), or the one the manifests assume."""
    for cls in settings_classes():
        if cls.model_config["env_prefix"] == "FLYWHEEL_WEBHOOK_" and "path" in cls.model_fields:
            return str(cls.model_fields["path"].default)
    return "/argilla-webhook"


def check_setting_names(where: str, keys: set[str]) -> None:
    known = settings_env_names()
    unknown = []
    for key in sorted(keys):
        prefixes = [prefix for prefix in known if key.startswith(prefix)]
        if prefixes and key not in set().union(*(known[p] for p in prefixes)):
            unknown.append(key)
    assert not unknown, f"{where}: settings that services/settings.py does not define: {unknown}"


# ---------------------------------------------------------------------------------------------- compose


def test_compose_file_matches_the_compose_specification() -> None:
    errors = _errors(compose_validator(), compose())
    assert not errors, f"{COMPOSE_FILE.name} violates the Compose Specification:\n" + "\n".join(errors)


def test_compose_has_the_whole_stack() -> None:
    images = {name: str(svc.get("image", "")) for name, svc in services().items()}
    assert images["kafka"].startswith("apache/kafka:")
    kafka_env = environment(services()["kafka"])
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller", "Kafka runs in KRaft mode, one node"
    argilla = [name for name, image in images.items() if image.startswith("argilla/argilla-server:")]
    assert set(argilla) == {"argilla", "argilla-worker"}
    assert services()["argilla-worker"]["command"][:4] == ["python", "-m", "argilla_server", "worker"]
    assert re.match(r"docker\.elastic\.co/elasticsearch/elasticsearch:8\.", images["elasticsearch"])
    es_env = environment(services()["elasticsearch"])
    assert es_env["discovery.type"] == "single-node" and str(es_env["xpack.security.enabled"]) == "false"
    assert images["redis"].startswith("redis:")
    assert images["postgres"].startswith("postgres:")
    assert images["s3"].startswith("andrewgaul/s3proxy:")
    assert not any("minio" in text.lower() for text in strings(compose())), "the S3 server is S3Proxy, not MinIO"
    database_url = environment(services()["argilla"])["ARGILLA_DATABASE_URL"]
    assert re.match(r"postgresql\+asyncpg://[^@]+@postgres:5432/", database_url), database_url
    for name, command in FLYWHEEL_PROCESSES.items():
        service = services()[name]
        assert service["command"] == command, f"{name} runs `flywheel {' '.join(command)}`"
        assert service["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        assert (REPO / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert services()["serve"]["profiles"] == ["single"]
    assert all("profiles" not in services()[name] for name in ("capture", "labeler", "annotation"))


def test_compose_flywheel_settings() -> None:
    for name in FLYWHEEL_PROCESSES:
        env = environment(services()[name])
        assert env["FLYWHEEL_LAKE_URL"] == "s3://flywheel/lake", name
        for key in (
            "FLYWHEEL_KAFKA_BOOTSTRAP_SERVERS", "FLYWHEEL_LAKE_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "FLYWHEEL_ARGILLA_URL", "FLYWHEEL_ARGILLA_API_KEY", "FLYWHEEL_WEBHOOK_SECRET",
        ):  # fmt: skip
            assert key in env, f"{name} lacks {key}"
        check_setting_names(f"{COMPOSE_FILE.name} service {name}", set(env))
    for name in HTTP_PROCESSES:
        env = environment(services()[name])
        assert env["FLYWHEEL_WEBHOOK_HOST"] == "0.0.0.0" and int(env["FLYWHEEL_WEBHOOK_PORT"]) == 8080, name
        assert env["FLYWHEEL_WEBHOOK_PUBLIC_URL"] == f"http://{name}:8080{webhook_path()}", name


def test_compose_health_checks() -> None:
    """Every long-running service has a health check, or says in x-healthcheck-note why it has none."""
    for name, service in services().items():
        if service.get("restart") == "no":  # a one-shot: others wait for it to complete, not to be healthy
            continue
        check = service.get("healthcheck") or {}
        if check.get("disable"):
            note = str(service.get("x-healthcheck-note", "")).strip()
            assert len(note) > 40, f"{name} disables its health check without x-healthcheck-note saying why"
            assert name in FLYWHEEL_PROCESSES, f"{name} is a server: it needs a health check"
        else:
            assert check.get("test"), f"{name} has no health check"
    for name in HTTP_PROCESSES:
        test = " ".join(services()[name]["healthcheck"]["test"])
        assert "127.0.0.1:8080/healthz" in test, f"{name}'s health check asks /healthz on 8080: {test}"


def test_compose_depends_on_waits_for_health() -> None:
    for name, service in services().items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert isinstance(spec, dict), f"{name}: depends_on {dependency} needs a condition"
            target = services()[dependency]
            expected = (
                "service_completed_successfully"
                if target.get("restart") == "no"
                else "service_healthy"
                if not (target.get("healthcheck") or {}).get("disable")
                else "service_started"
            )
            assert spec.get("condition") == expected, f"{name} -> {dependency}: condition {expected}"
    for name in FLYWHEEL_PROCESSES:
        assert services()[name].get("depends_on"), f"{name} starts before its dependencies"


def test_compose_capture_scales_out() -> None:
    capture = services()["capture"]
    assert "container_name" not in capture, "a container_name forbids `--scale capture=N`"
    assert "ports" not in capture, "fixed host ports forbid `--scale capture=N`"
    assert not any("container_name" in svc for name, svc in services().items() if name in FLYWHEEL_PROCESSES)


def test_compose_data_lives_in_named_volumes() -> None:
    declared = set(compose().get("volumes") or {})
    used = set()
    for name, service in services().items():
        for mount in service.get("volumes") or []:
            source = mount["source"] if isinstance(mount, dict) else mount.split(":", 1)[0]
            assert not source.startswith((".", "/", "~")), f"{name} bind-mounts {source}: use a named volume"
            assert source in declared, f"{name} mounts undeclared volume {source}"
            used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"
    for name in ("kafka", "s3", "elasticsearch", "postgres", "argilla"):
        assert services()[name].get("volumes"), f"{name} keeps its data in the container"


def test_compose_secrets_are_not_hard_coded() -> None:
    example = env_example()
    for name, service in services().items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                match = INTERPOLATION.fullmatch(str(value))
                assert match and (match["op"] in ("?", ":?") or match["arg"] == ""), (
                    f"{name}: {key} must come from .env as ${{VAR:?...}} (or ${{VAR:-}} if optional), not {value!r}"
                )
    for text in strings(compose()):
        for url in URL_PASSWORD.finditer(text):
            assert INTERPOLATION.fullmatch(url["password"]), f"a password is written into a URL: {text}"
    for key, value in example.items():
        if SECRET_NAME.search(key):
            assert value == PLACEHOLDER, f"{COMPOSE_ENV_EXAMPLE.name}: {key} must be the placeholder {PLACEHOLDER!r}"


def test_compose_variables_are_documented() -> None:
    """Required variables are exactly the example file's; the others have defaults."""
    required: set[str] = set()
    optional: set[str] = set()
    for text in strings(compose()):
        for match in INTERPOLATION.finditer(text):
            (required if match["op"] in ("?", ":?") else optional).add(match["name"])
            assert match["op"] is not None, f"${{{match['name']}}} has neither a default nor :? (in {text!r})"
    example = env_example()
    commented = set(re.findall(r"^#\s*([A-Z][A-Z0-9_]*)=", COMPOSE_ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert required <= set(example), f"required but missing from {COMPOSE_ENV_EXAMPLE.name}: {required - set(example)}"
    assert set(example) <= required | optional, f"in the example but unused: {set(example) - required - optional}"
    assert optional <= set(example) | commented, (
        f"undocumented optional variables: {optional - set(example) - commented}"
    )


def interpolate(value: Any, values: dict[str, str]) -> str:
    """Compose's substitution, enough for this file: ${VAR:?err}, ${VAR:-default}, ${VAR-default}."""

    def one(match: re.Match[str]) -> str:
        if match["name"] in values:
            return values[match["name"]]
        return match["arg"] if match["op"] in (":-", "-") else ""

    return INTERPOLATION.sub(one, str(value))


@pytest.mark.parametrize("name", sorted(FLYWHEEL_PROCESSES))
def test_settings_load_from_the_compose_environment(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every settings class of services/settings.py accepts what compose gives the process."""
    for key in list(os.environ):
        if key.startswith("FLYWHEEL_"):
            monkeypatch.delenv(key)
    for key, value in environment(services()[name]).items():
        monkeypatch.setenv(key, interpolate(value, env_example()))
    for cls in settings_classes():
        cls()


def test_settings_load_from_the_k8s_config_map(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("FLYWHEEL_"):
            monkeypatch.delenv(key)
    for key, value in k8s_object("ConfigMap", "flywheel-config")["data"].items():
        monkeypatch.setenv(key, value)
    for cls in settings_classes():
        cls()


# ---------------------------------------------------------------------------------------------- Dockerfile


def test_dockerfile() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    bases = [line.split()[1] for line in instructions if line.upper().startswith("FROM ")]
    assert bases and all(base == "python:3.11-slim" for base in bases), bases
    users = [line.split()[1] for line in instructions if line.upper().startswith("USER ")]
    assert users, "the image runs as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: a numeric non-root UID (runAsNonRoot checks it)"
    entrypoints = [line for line in instructions if line.upper().startswith("ENTRYPOINT ")]
    assert entrypoints and json.loads(entrypoints[-1].split(None, 1)[1]) == ["flywheel"]
    assert any(re.search(r"\bpip install \.", line) for line in instructions), "the project is installed with pip"
    allowed = {line[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")}
    for line in instructions:
        parts = line.split()
        if parts[0].upper() == "COPY" and not any(p.startswith("--from") for p in parts):
            for source in parts[1:-1]:
                assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
                assert source.rstrip("/") in allowed, f"COPY {source}: excluded by {DOCKERIGNORE.name}"
    for _name, spec in pod_specs():
        assert spec["securityContext"]["runAsUser"] == int(uid), "pods run as the image's user"


# ---------------------------------------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: p.name)
def test_k8s_manifest_matches_the_kubernetes_schema(path: Path, version: str) -> None:
    problems = []
    for index, doc in enumerate(k8s_documents(path)):
        assert doc.get("apiVersion") and doc.get("kind"), f"{path.name} document {index} lacks apiVersion/kind"
        errors = _errors(k8s_validator(version, doc["apiVersion"], doc["kind"]), doc)
        if errors:
            problems.append(f"{doc['kind']}/{doc.get('metadata', {}).get('name')}:\n" + "\n".join(errors))
    assert not problems, f"{path.name} is invalid for Kubernetes {version}:\n" + "\n".join(problems)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    expected = {p.name for p in k8s_files()} - {SECRET_TEMPLATE.name}
    assert set(resources) == expected, (
        f"kustomization.yaml resources differ from the files: {set(resources) ^ expected}"
    )
    assert SECRET_TEMPLATE.name not in resources, "the Secret template must never be applied"
    namespace = kustomization["namespace"]
    for doc in k8s_objects():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, f"{doc['kind']}/{doc['metadata']['name']}"
    assert (
        k8s_object("Namespace", namespace)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    )
    images = {container["image"].split(":")[0] for _n, spec in pod_specs() for container in spec["containers"]}
    assert images == {image["name"] for image in kustomization["images"]}


def test_k8s_workloads_have_resources_and_security() -> None:
    for name, spec in pod_specs():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, f"{name} mounts an API token it never uses"
        for container in spec["containers"]:
            where = f"{name}/{container['name']}"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container.get("resources", {}).get(bound, {})), f"{where}: {bound}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"


def test_k8s_deployments_have_probes() -> None:
    """Readiness everywhere; liveness too, or an annotation saying why a liveness probe would do harm."""
    deployments = k8s_objects("Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {
        "flywheel-capture", "flywheel-labeler", "flywheel-annotation",
    }  # fmt: skip
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"{name}: the selector does not match its pods"
        reason = deployment["metadata"].get("annotations", {}).get("flywheel/liveness-probe", "")
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container.get("readinessProbe"), f"{name}/{container['name']} has no readiness probe"
            if not container.get("livenessProbe"):
                assert reason.startswith("none:") and len(reason) > 60, (
                    f"{name}/{container['name']} has no liveness probe and no flywheel/liveness-probe reason"
                )
            ports = {p.get("name") for p in container.get("ports", [])} | {
                p["containerPort"] for p in container.get("ports", [])
            }
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                http = (container.get(kind) or {}).get("httpGet")
                if http:
                    assert http["port"] in ports, f"{name}: {kind} asks undeclared port {http['port']}"
                    # liveness restarts a stuck process; readiness (and startup) waits for its dependencies
                    expected = "/livez" if kind == "livenessProbe" else "/readyz"
                    assert http["path"] == expected, f"{name}: {kind} asks {http['path']}, not {expected}"


def test_k8s_capture_scales_out() -> None:
    capture = k8s_object("Deployment", "flywheel-capture")
    replicas = capture["spec"]["replicas"]
    assert replicas > 1
    assert capture["spec"]["template"]["spec"]["containers"][0]["args"] == ["capture"]
    labels = capture["spec"]["template"]["metadata"]["labels"]
    budget = k8s_object("PodDisruptionBudget", "flywheel-capture")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = k8s_object("HorizontalPodAutoscaler", "flywheel-capture")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "flywheel-capture"}
    assert hpa["spec"]["minReplicas"] == replicas
    partitions = int(hpa["metadata"]["annotations"]["flywheel/topic-partitions"])
    assert replicas < hpa["spec"]["maxReplicas"] <= partitions, "no more consumers than partitions"
    config = k8s_object("ConfigMap", "flywheel-config")["data"]
    assert config["FLYWHEEL_CAPTURE_GROUP_ID"], "one consumer group for every replica"


def test_k8s_labeler_annotation_and_renewal() -> None:
    labeler = k8s_object("Deployment", "flywheel-labeler")
    assert labeler["spec"]["replicas"] == 1
    assert labeler["spec"]["strategy"]["type"] == "Recreate"
    assert labeler["spec"]["template"]["spec"]["containers"][0]["args"] == ["labeler"]

    annotation = k8s_object("Deployment", "flywheel-annotation")
    container = annotation["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["annotate", "serve"]
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    service = k8s_object("Service", "flywheel-annotation")
    assert service["spec"]["selector"].items() <= annotation["spec"]["template"]["metadata"]["labels"].items()
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]

    renew = k8s_object("CronJob", "flywheel-slices-renew")
    assert renew["spec"]["concurrencyPolicy"] == "Forbid"
    job = renew["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["containers"][0]["args"] == ["slices", "renew", "--all"]
    assert job["restartPolicy"] == "Never"


def test_k8s_settings_and_secret_references() -> None:
    config = k8s_object("ConfigMap", "flywheel-config")
    check_setting_names("deploy/k8s ConfigMap flywheel-config", set(config["data"]))
    assert config["data"]["FLYWHEEL_LAKE_URL"].startswith("s3://")
    service = k8s_object("Service", "flywheel-annotation")
    port = service["spec"]["ports"][0]["port"]
    address = f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local:{port}"
    assert config["data"]["FLYWHEEL_WEBHOOK_PUBLIC_URL"] == address + webhook_path()
    assert config["data"]["FLYWHEEL_WEBHOOK_PORT"] == "8080" and config["data"]["FLYWHEEL_WEBHOOK_HOST"] == "0.0.0.0"
    assert not [key for key in config["data"] if SECRET_NAME.search(key)], "secrets belong in the Secret"
    template = k8s_documents(SECRET_TEMPLATE)
    assert len(template) == 1 and template[0]["kind"] == "Secret"
    secret = template[0]
    assert set(secret["stringData"].values()) == {PLACEHOLDER}, "the Secret template holds placeholders only"
    assert not k8s_objects("Secret"), "no Secret is applied from the repository"
    for name, spec in pod_specs():
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] == config["metadata"]["name"], name
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if SECRET_NAME.search(variable["name"]):
                    assert ref, f"{name}: {variable['name']} must come from the Secret, not a literal"
                if ref:
                    assert ref["name"] == secret["metadata"]["name"], name
                    if ref.get("optional"):
                        assert ref["key"] in SECRET_TEMPLATE.read_text(), (
                            f"{name}: document {ref['key']} in the template"
                        )
                    else:
                        assert ref["key"] in secret["stringData"], f"{name}: the Secret template lacks {ref['key']}"


def test_the_validators_reject_broken_manifests() -> None:
    """The schemas are strict enough to catch a typo, so a passing run means something."""
    broken_compose = copy.deepcopy(compose())
    broken_compose["services"]["capture"]["restrat"] = "always"
    broken_compose["services"]["kafka"]["healthcheck"]["interval"] = 10
    errors = "\n".join(_errors(compose_validator(), broken_compose))
    assert "'restrat' was unexpected" in errors and "$.services.kafka.healthcheck.interval" in errors, errors

    deployment = copy.deepcopy(k8s_object("Deployment", "flywheel-capture"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolicy"] = 1
    container["resource"] = container.pop("resources")
    deployment["spec"]["replicas"] = "three"
    for version in K8S_VERSIONS:
        errors = "\n".join(_errors(k8s_validator(version, "apps/v1", "Deployment"), deployment))
        for expected in ("'resource'", "containers[0].imagePullPolicy", "$.spec.replicas"):
            assert expected in errors, f"Kubernetes {version}: {expected!r} not reported in:\n{errors}"
