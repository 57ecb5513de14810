"""Small Kineto documents in the shape real traces have (field names and categories as PyTorch
Profiler writes them), for the attribution tests: host ops, launch calls, kernels."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

A100 = {
    "id": 0,
    "name": "NVIDIA A100-SXM4-80GB",
    "totalGlobalMem": 85899345920,
    "computeMajor": 8,
    "computeMinor": 0,
    "numSms": 108,
}
PID, TID = 100, 101


class Doc:
    """A Kineto trace under construction; times in µs."""

    def __init__(self, devices: list[dict] | None = None) -> None:
        self.events: list[dict] = []
        self.devices = [A100] if devices is None else devices
        self._corr = 1000

    def op(self, name: str, ts: float, dur: float, *, cat: str = "cpu_op", **args: object) -> None:
        self.events.append(
            {
                "ph": "X",
                "cat": cat,
                "name": name,
                "pid": PID,
                "tid": TID,
                "ts": ts,
                "dur": dur,
                "args": {"External id": len(self.events) + 1, **args},
            }
        )

    def launch(self, name: str, ts: float, dur: float) -> int:
        """A runtime launch call; returns its correlation id."""
        self._corr += 1
        self.events.append(
            {
                "ph": "X",
                "cat": "cuda_runtime",
                "name": name,
                "pid": PID,
                "tid": TID,
                "ts": ts,
                "dur": dur,
                "args": {"cbid": 211, "correlation": self._corr},
            }
        )
        return self._corr

    def kernel(
        self, name: str, ts: float, dur: float, correlation: int, *, stream: int = 7, cat: str = "kernel"
    ) -> None:
        self.events.append(
            {
                "ph": "X",
                "cat": cat,
                "name": name,
                "pid": 0,
                "tid": stream,
                "ts": ts,
                "dur": dur,
                "args": {
                    "device": 0,
                    "stream": stream,
                    "correlation": correlation,
                    "grid": [1, 1, 1],
                    "block": [128, 1, 1],
                },
            }
        )

    def write(self, path: Path) -> Path:
        doc = {
            "schemaVersion": 1,
            "deviceProperties": self.devices,
            "traceEvents": self.events,
            "traceName": path.name,
            "displayTimeUnit": "ms",
        }
        path.write_bytes(gzip.compress(json.dumps(doc).encode()))
        return path
