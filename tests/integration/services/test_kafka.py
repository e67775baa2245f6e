"""A produce and a consumer-group consume through kafka-python against the real broker `make test` starts."""

from __future__ import annotations

import json

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic


def test_produce_then_consume_in_a_group(kafka_bootstrap: str, unique_name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id=unique_name)
    try:
        admin.create_topics([NewTopic(unique_name, num_partitions=2, replication_factor=1)])
        producer = KafkaProducer(
            bootstrap_servers=kafka_bootstrap, acks="all", value_serializer=lambda v: json.dumps(v).encode()
        )
        for i in range(50):
            producer.send(unique_name, key=str(i % 5).encode(), value={"i": i})
        producer.flush(timeout=30)
        producer.close()

        group = f"{unique_name}-group"
        consumer = KafkaConsumer(
            unique_name,
            bootstrap_servers=kafka_bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            value_deserializer=lambda b: json.loads(b),
        )
        seen: list[int] = []
        try:
            for _ in range(60):
                for records in consumer.poll(timeout_ms=500).values():
                    seen.extend(record.value["i"] for record in records)
                if len(seen) >= 50:
                    break
            consumer.commit()
        finally:
            consumer.close()
        assert sorted(seen) == list(range(50))

        committed = admin.list_group_offsets(group)[group]
        assert sum(meta.offset for meta in committed.values()) == 50
    finally:
        admin.delete_topics([unique_name])
        admin.close()
