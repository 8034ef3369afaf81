"""The web walkthrough's product server: it serves the example page and a fake answer.

For each answer it does what a product's server does: it emits the `interaction` to flywheel's gateway with its
server key, makes the interaction token, and hands the page the answer with the interaction id and token. A
regeneration happens here too, so this server sends the `retry` (with the new interaction's id), not the page.

    FLYWHEEL_GATEWAY_URL=http://127.0.0.1:8000 FLYWHEEL_SERVER_KEY=sk_... FLYWHEEL_BROWSER_KEY=pk_... \\
    FLYWHEEL_GATEWAY_TOKEN_SECRET=... python clients/web/example/serve.py --port 8080

Needs the client distribution (`pip install ./clients/python`) and a built module (`npm run build` in clients/web).
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flywheel_feedback.client import interaction_token, new_event_id, now
from flywheel_feedback.schemas.events import EventBase, Interaction, ModelInput, ModelRef, Retry

HERE = Path(__file__).resolve().parent
MODULE = HERE.parent / "dist" / "flywheel-web.js"
QUESTION = "How do I reset my password?"
ANSWERS = [
    "Open Settings, choose Account, then Reset password. We will e-mail you a link that is valid for one hour.",
    "Go to Settings > Account > Reset password and follow the link we send you; it expires after an hour.",
]


@dataclass
class Config:
    gateway: str  # the gateway as the page reaches it
    server_key: str
    browser_key: str
    token_secret: str
    client: dict[str, Any] = field(default_factory=dict)  # options for the page's configure()
    served: list[str] = field(default_factory=list)  # interaction ids, in order


def post_events(config: Config, *events: EventBase) -> None:
    """To the gateway with the server key (from a server: no Origin header), each event acknowledged by Kafka."""
    body = "[" + ",".join(e.model_dump_json(exclude_none=True) for e in events) + "]"
    request = urllib.request.Request(
        f"{config.gateway}/v1/events", data=body.encode(), method="POST",
        headers={"Authorization": f"Bearer {config.server_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        results = json.load(answer)
    if results["accepted"] != len(events):
        raise RuntimeError(f"the gateway did not accept every event: {results}")


def answer(config: Config, retry_of: str | None) -> dict[str, Any]:
    interaction_id = f"i-{uuid.uuid4().hex}"
    output = ANSWERS[1 if retry_of else 0]
    events: list[EventBase] = [Interaction(
        event_id=new_event_id(), ts=now(), interaction_id=interaction_id, session_id="s-example",
        user_id="u-example", app="support-bot", task="reply-draft",
        model=ModelRef(id="support-llm", version="2026-11-15"), input=ModelInput(prompt=QUESTION), output=output,
    )]
    if retry_of is not None:  # the regeneration is asked of this server, so it says so
        events.append(Retry(event_id=new_event_id(), ts=now(), interaction_id=retry_of,
                            new_interaction_id=interaction_id))
    post_events(config, *events)
    config.served.append(interaction_id)
    return {
        "interaction_id": interaction_id,
        "token": interaction_token(config.token_secret, interaction_id, ttl=3600),
        "question": QUESTION,
        "output": output,
        "gateway": config.gateway,
        "key": config.browser_key,  # publishable: it may ship in the page
        "client": config.client,
    }


def make_server(config: Config, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", (HERE / "index.html").read_bytes())
            elif path == "/flywheel-web.js":
                self._send(200, "text/javascript", MODULE.read_bytes())
            else:
                self._send(404, "text/plain", b"not found")

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/answer":
                self._send(404, "text/plain", b"not found")
                return
            retry_of = parse_qs(url.query).get("retry_of", [None])[0]
            body = json.dumps(answer(config, retry_of)).encode()
            self._send(200, "application/json", body)

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests run it
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    config = Config(
        gateway=os.environ.get("FLYWHEEL_GATEWAY_URL", "http://127.0.0.1:8000").rstrip("/"),
        server_key=os.environ["FLYWHEEL_SERVER_KEY"],
        browser_key=os.environ["FLYWHEEL_BROWSER_KEY"],
        token_secret=os.environ["FLYWHEEL_GATEWAY_TOKEN_SECRET"],
    )
    server = make_server(config, port=args.port)
    print(f"http://127.0.0.1:{server.server_address[1]}/")
    server.serve_forever()


if __name__ == "__main__":
    main()
