"""Trainers: specs, XGBoost and PyTorch (local and distributed), evaluation, tuning and ONNX export."""
