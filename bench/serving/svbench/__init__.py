"""The serving benchmarks' code (bench/serving): the model, the floor, the load tool, the Bottega and MLflow sides."""
