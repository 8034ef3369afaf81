"""OpenTelemetry traces into flywheel: OTLP trace requests (protobuf or OTLP/JSON) become interaction events.

`decode` reads a request body, `convert` turns its LLM spans into events that pass the contract, `produce` sends
them to Kafka; the HTTP route is services/gateway/otlp_route.py and capture reads Collector exports from Kafka.
"""
