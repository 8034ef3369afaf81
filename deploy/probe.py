"""Health probes for deploy/*.sh: talk to the services with the same clients the project uses.

    probe.py kafka 127.0.0.1:PORT            metadata round trip through kafka-python's admin client
    probe.py s3 http://127.0.0.1:PORT [BUCKET]  signed list_buckets through boto3; creates BUCKET if given

S3 keys come from FLYWHEEL_S3_ACCESS_KEY / FLYWHEEL_S3_SECRET_KEY, never from argv (argv shows in `ps`).
Exit status 0 means healthy; anything else prints one line saying why.
"""

from __future__ import annotations

import os
import sys


def probe_kafka(bootstrap: str) -> str:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="flywheel-deploy-probe",
        request_timeout_ms=5000,
    )
    try:
        cluster = admin.describe_cluster()
        topics = admin.list_topics()
    finally:
        admin.close()
    brokers = cluster.get("brokers") or []
    if not brokers:
        raise RuntimeError(f"{bootstrap} answered but reports no live broker yet")
    return f"kafka {bootstrap}: {len(brokers)} broker(s), controller {cluster.get('controller_id')}, " + (
        f"{len(topics)} topic(s)"
    )


def probe_s3(endpoint: str, bucket: str | None) -> str:
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=os.environ["FLYWHEEL_S3_ACCESS_KEY"],
        aws_secret_access_key=os.environ["FLYWHEEL_S3_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            connect_timeout=3,
            read_timeout=10,
            retries={"max_attempts": 1},
        ),
    )
    names = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
    if bucket and bucket not in names:
        s3.create_bucket(Bucket=bucket)
        names.append(bucket)
    return f"s3 {endpoint}: buckets {sorted(names)}"


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in {"kafka", "s3"}:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[0] == "kafka":
            print(probe_kafka(argv[1]))
        else:
            print(probe_s3(argv[1], argv[2] if len(argv) > 2 else None))
    except Exception as exc:  # a probe reports, it does not raise
        print(f"{argv[0]} probe of {argv[1]} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
