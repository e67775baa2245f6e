"""Feature-store benchmarks against Feast (see bench/README.md and docs/benchmarks.md)."""
