"""The README's OpenTelemetry example runs as written: its interaction id is the interaction's that reaches Kafka."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flywheel_feedback.services.settings import OtlpSettings

from ..conftest import REPO
from .otel_helpers import OTLP_HEADERS, FakeOpenAI, answer_to, serve_otlp
from .test_otlp_route import Recorder

pytestmark = pytest.mark.slow


def readme_example() -> str:
    blocks: list[str] = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL)
    (example,) = [b for b in blocks if "otel.install(provider)" in b]
    return example


def test_the_readme_example_sends_its_interaction(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(readme_example())
    producer = Recorder()
    with FakeOpenAI() as server, serve_otlp(OtlpSettings(topic="flywheel.events"), producer) as url:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OPENAI_BASE_URL": server.base_url,
               "OPENAI_API_KEY": "sk-test", "OTEL_EXPORTER_OTLP_ENDPOINT": url,
               "OTEL_EXPORTER_OTLP_HEADERS": OTLP_HEADERS}  # the app's server key, as the README says
        done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    iid, output = done.stdout.strip().splitlines()[-1].split(" ", 1)
    ((topic, messages),) = producer.sent
    ((key, value),) = messages
    event = json.loads(value)
    assert topic == "flywheel.events"
    assert key.decode() == event["interaction_id"] == iid
    question = [{"role": "user", "content": "How do I reset my password?"}]
    assert event["input"] == {"messages": question}
    assert event["output"] == output == answer_to(question)
    assert (event["session_id"], event["user_id"], event["app"], event["task"]) == ("s-1", "u-1", "support-bot",
                                                                                  "reply-draft")
    assert event["model"]["id"] == "gpt-4o-mini"
