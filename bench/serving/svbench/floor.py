"""The floor: a bare ASGI app calling ONNX Runtime (one thread) on the benchmark model, served by uvicorn with one
worker and no access log, the way `bottega serve` runs its app.

    python -m svbench.floor --model model.onnx --features 50 --port 8800

`POST` any path with `{"instances": [{"f0": ..., ...}]}` -> `{"predictions": [P(class 1), ...]}`. It does the least
an honest server must: read the body, decode the JSON, order the features, predict, encode the answer.
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON = [(b"content-type", b"application/json")]


class Floor:
    def __init__(self, model: Path, features: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.names = [f"f{i}" for i in range(features)]
        self.input = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = "probabilities" if "probabilities" in outputs else outputs[-1]

    def predict(self, body: bytes) -> bytes:
        import numpy as np
        import orjson

        rows = orjson.loads(body)["instances"]
        matrix = np.array([[row[name] for name in self.names] for row in rows], dtype=np.float32)
        probabilities = self.session.run([self.output], {self.input: matrix})[0]
        result: bytes = orjson.dumps({"predictions": probabilities[:, 1].astype(np.float64).tolist()})
        return result

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        try:
            status, body = 200, self.predict(b"".join(chunks))
        except (KeyError, TypeError, ValueError) as exc:
            status, body = 400, repr(exc).encode()
        await send({"type": "http.response.start", "status": status, "headers": JSON})
        await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m svbench.floor")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = Floor(args.model, args.features)
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
