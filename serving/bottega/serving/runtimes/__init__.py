"""Model runtimes of the prediction service: ONNX Runtime, native XGBoost, custom Python models, and the artifact
cache that downloads and verifies what they load."""
