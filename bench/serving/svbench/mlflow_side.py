"""MLflow's side, run with MLflow's own interpreter (bench/.venv-mlflow): log the benchmark booster with
`mlflow.xgboost.log_model` to a local tracking store and say where it is; the runner then starts
`mlflow models serve -m <model_uri> --env-manager local` on it.

    bench/.venv-mlflow/bin/python -m svbench.mlflow_side --ubj model.ubj --features 50 --workdir DIR --out out.json

Only the standard library, MLflow, XGBoost, numpy and pandas are imported here (not Bottega).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def log_model(ubj: Path, features: int, workdir: Path) -> dict[str, str]:
    import mlflow  # type: ignore[import-not-found,unused-ignore]
    import numpy as np
    import pandas as pd
    import xgboost as xgb
    from mlflow.models import infer_signature  # type: ignore[import-not-found,unused-ignore]

    workdir.mkdir(parents=True, exist_ok=True)
    tracking = f"sqlite:///{workdir / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    experiment = mlflow.create_experiment("bench-serving", artifact_location=(workdir / "artifacts").as_uri())
    booster = xgb.Booster(model_file=str(ubj))
    names = [f"f{i}" for i in range(features)]
    example = pd.DataFrame(np.zeros((2, features)), columns=names)
    signature = infer_signature(example, booster.predict(xgb.DMatrix(example)))
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.xgboost.log_model(booster, name="model", signature=signature)
    return {"model_uri": info.model_uri, "tracking_uri": tracking, "mlflow_version": mlflow.__version__}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m svbench.mlflow_side")
    parser.add_argument("--ubj", type=Path, required=True)
    parser.add_argument("--features", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.write_text(json.dumps(log_model(args.ubj, args.features, args.workdir)))


if __name__ == "__main__":
    main()
