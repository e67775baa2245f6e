"""Streaming feature pipelines: a Kafka consumer that keeps windowed aggregations, written online and offline.

`events` decodes and validates the JSON events of a topic, `aggregator` holds the pure sliding-window state, and
`processor.run` is the consumer loop (double write, offset commits, dead letters, replay on restart).
"""
