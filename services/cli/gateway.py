"""`flywheel gateway`: events over HTTP onto Kafka (settings from FLYWHEEL_GATEWAY_* and FLYWHEEL_KAFKA_*)."""

from __future__ import annotations

from typing import Annotated

import typer

from flywheel_feedback.services.cli.common import VerboseOption, configure_logging


def gateway(
    host: Annotated[str | None, typer.Option(help="default: FLYWHEEL_GATEWAY_HOST (127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="default: FLYWHEEL_GATEWAY_PORT (8000)")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Serve POST /v1/events (server and browser keys), /healthz and /metrics; SIGTERM stops it gracefully."""
    from flywheel_feedback.services.errors import FlywheelError
    from flywheel_feedback.services.gateway.app import gateway_app
    from flywheel_feedback.services.gateway.server import HttpServer
    from flywheel_feedback.services.settings import GatewaySettings

    configure_logging(verbose)
    settings = GatewaySettings()
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings.model_copy(update=overrides) if overrides else settings
    app = gateway_app(settings)
    try:
        server = HttpServer(app, host=settings.host, port=settings.port, name="gateway")
    except OSError as exc:
        raise FlywheelError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from exc
    server.run()
