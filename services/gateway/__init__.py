"""flywheel's HTTP face: one ASGI app (Starlette, served by uvicorn) for everything flywheel serves over HTTP.

- `app`: the app and its routes (/healthz, /metrics, /v1/events, the Argilla webhook, OTLP when present)
- `server`: uvicorn on a socket of its own, in the foreground or on a thread
- `events`: POST /v1/events: keys, CORS, rate limits, tokens, validation as capture validates, per-event results
- `body`: reading a bounded body and splitting a JSON array into its events' own bytes
- `producer`: onto Kafka (aiokafka, idempotent, acks=all), answered once acknowledged; retries not produced twice
- `backpressure`: bounded in-flight bytes and requests, and a 503 while Kafka is slow or down
- `keys`, `tokens`, `ratelimit`, `metrics`: server and browser keys, interaction tokens, per-key limits, figures
"""
