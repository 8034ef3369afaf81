"""The two distributions as a user gets them: built with `python -m build`, checked with `twine check`, each
installed into a fresh virtual environment outside the repository. The client emits to the real Kafka with
nothing of the service installed; the service runs `flywheel demo`."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from flywheel_feedback.schemas.events import EVENT_ADAPTER

REPO = Path(__file__).resolve().parents[2]
SERVICE_ONLY = ("numpy", "polars", "scikit-learn", "cleanlab", "argilla", "faststream", "pyarrow", "boto3")
OUR_OLD_TOP_LEVEL = ("schemas", "labeling", "services")

pytestmark = pytest.mark.slow


def run(*command: str | Path, cwd: Path, timeout: float = 900) -> str:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin" / "python"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("dist")
    for project in (REPO / "clients" / "python", REPO):
        run(sys.executable, "-m", "build", "--outdir", out, project, cwd=REPO)
    built = sorted(out.iterdir())
    assert [p.name for p in built] == [
        "flywheel_feedback-0.2.0-py3-none-any.whl", "flywheel_feedback-0.2.0.tar.gz",
        "flywheel_feedback_client-0.2.0-py3-none-any.whl", "flywheel_feedback_client-0.2.0.tar.gz",
    ]
    run(sys.executable, "-m", "twine", "check", "--strict", *built, cwd=REPO)
    yield out


def installed(python: Path, cwd: Path) -> set[str]:
    listing = json.loads(run(python, "-m", "pip", "list", "--format", "json", cwd=cwd))
    return {item["name"].lower() for item in listing}


def assert_no_old_top_level_imports(python: Path, cwd: Path) -> None:
    probe = "import importlib.util as u, json; print(json.dumps([n for n in %r if u.find_spec(n)]))"
    found = json.loads(run(python, "-c", probe % (OUR_OLD_TOP_LEVEL,), cwd=cwd))
    assert found == [], f"importable as top-level modules: {found}"


@pytest.mark.kafka
def test_the_client_wheel_installs_alone_and_emits_to_kafka(
    dist: Path, tmp_path: Path, kafka_bootstrap: str, kafka_topic: str
) -> None:
    python = fresh_venv(tmp_path / "venv")
    wheel = dist / "flywheel_feedback_client-0.2.0-py3-none-any.whl"
    run(python, "-m", "pip", "install", "--quiet", wheel, cwd=tmp_path)
    packages = installed(python, tmp_path)
    assert "flywheel-feedback-client" in packages and "flywheel-feedback" not in packages
    assert not packages & set(SERVICE_ONLY), f"the client pulled service dependencies: {packages & set(SERVICE_ONLY)}"
    assert_no_old_top_level_imports(python, tmp_path)

    script = tmp_path / "emit.py"
    script.write_text(
        "import sys\n"
        "from flywheel_feedback.client import Emitter, new_event_id, now\n"
        "from flywheel_feedback.schemas.events import Copy, Interaction, ModelInput, ModelRef\n"
        "with Emitter(sys.argv[1], topic=sys.argv[2]) as emitter:\n"
        "    emitter.emit(Interaction(event_id=new_event_id(), ts=now(), interaction_id='pkg-i1', session_id='s',\n"
        "        user_id='u', app='a', task='t', model=ModelRef(id='m', version='1'),\n"
        "        input=ModelInput(prompt='hello?'), output='hi'))\n"
        "    emitter.emit(Copy(event_id=new_event_id(), ts=now(), interaction_id='pkg-i1', chars=2))\n"
    )
    run(python, script, kafka_bootstrap, kafka_topic, cwd=tmp_path)

    consumer = KafkaConsumer(kafka_topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000)
    try:
        messages = [m for _, batch in consumer.poll(timeout_ms=10_000, max_records=10).items() for m in batch]
    finally:
        consumer.close()
    events = [EVENT_ADAPTER.validate_json(m.value) for m in messages]
    assert sorted(e.type for e in events) == ["copy", "interaction"]
    assert {m.key for m in messages} == {b"pkg-i1"}  # keyed by interaction: one partition, in order


def test_the_service_wheel_installs_and_runs_the_demo(dist: Path, tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv")
    # The client comes from the built files too: it is not on PyPI under this version.
    run(python, "-m", "pip", "install", "--quiet", "--find-links", dist,
        dist / "flywheel_feedback-0.2.0-py3-none-any.whl", cwd=tmp_path)
    assert {"flywheel-feedback", "flywheel-feedback-client"} <= installed(python, tmp_path)
    assert_no_old_top_level_imports(python, tmp_path)
    run(python, "-m", "pip", "check", cwd=tmp_path)
    flywheel = python.parent / "flywheel"
    output = run(flywheel, "demo", "--workdir", tmp_path / "demo", "--interactions", "3000", cwd=tmp_path)
    assert (tmp_path / "demo" / "report.html").stat().st_size > 10_000, output
