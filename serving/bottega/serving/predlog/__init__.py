"""Prediction logging: every prediction is appended to a local durable spool before the response is sent, and a
background forwarder ships the spool to the project's Kafka topic (or, on embedded defaults, the spool is the log).

- `record`: `PredictionRecord` and its one-line JSON encoding.
- `spool`: the append-only segment files, one folder per writer process, torn-tail detection, forwarder progress,
  orphan adoption, `read_spool`.
- `forwarder`: the thread that produces the spool to Kafka (acks=all) and commits progress after the acks.
- `log`: `PredictionLog`, `open_prediction_log`, `default_topic` (what the prediction service uses).
"""
