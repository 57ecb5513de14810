"""``Client``: one method per query route of the REST API, each answering a polars DataFrame.

Tables travel as Parquet (``?format=parquet``), so column types arrive as the analysis
functions made them; a table bigger than the server's row cap comes in pages, which are
followed (``Link: rel="next"``) and joined.  Method names and parameters are the CLI's and the
REST routes'; the columns are documented in the OpenAPI (``/docs``) and docs/schema.md.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import polars as pl

from tracehouse.client.upload import raise_for_error, upload_with, wait_for_job
from tracehouse.core.errors import BadInput, BadTrace

Params = Mapping[str, Any]
# Runs per request when the client reads a whole listing: fewer round trips than the
# server's default page of 100, still a bounded answer each.
RUNS_PER_REQUEST = 1000
# Matrix cells per request when the client reads a whole matrix (the server's default page is
# 1,000 cells): 2,500 runs x 10 operators in three requests.
MATRIX_CELLS_PER_REQUEST = 10_000


def _filters(filters: Mapping[str, object]) -> list[str]:
    """Run-knob filters (``image_size=512``) as the routes' repeatable ``filter=KEY=VALUE``."""
    return [f"{key}={value}" for key, value in filters.items() if value is not None]


class Client:
    """A tracehouse service at ``url``; ``token`` from ``tracehouse token create`` (None when
    the server runs with ``--public-read`` and only reads are made)."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ---------------------------------------------------------------- transport
    def table(self, path: str, params: Params | None = None, *, follow: bool = True) -> pl.DataFrame:
        """GET a table route as a DataFrame, every page of it (``follow=False``: the first)."""
        query = {k: v for k, v in (params or {}).items() if v is not None} | {"format": "parquet"}
        reply = self._http.get(path, params=query)
        pages = []
        while True:
            raise_for_error(reply)
            pages.append(pl.read_parquet(io.BytesIO(reply.content)))
            following = reply.links.get("next", {}).get("url")
            if reply.headers.get("X-Truncated") != "true" or not following or not follow:
                break
            reply = self._http.get(following)
        return pages[0] if len(pages) == 1 else pl.concat(pages, how="vertical")

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self._http.request(method, path, **kwargs)
        raise_for_error(reply)
        return reply.json() if reply.content else None

    # ---------------------------------------------------------------- runs
    def runs(
        self,
        *,
        model: str | None = None,
        family: str | None = None,
        hardware: str | None = None,
        attention_backend: str | None = None,
        tags: Mapping[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> pl.DataFrame:
        """Matching runs, oldest first: every one (the server answers 100 a page unless asked
        for more: read here 1,000 a page, following its links), or with ``limit`` one page
        of that many from ``offset``."""
        params: dict[str, Any] = {
            "model": model,
            "family": family,
            "hardware": hardware,
            "attention_backend": attention_backend,
            "tag": _filters(tags or {}),
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "offset": offset or None,
        }
        if limit is not None:
            return self.table("/v1/runs", params | {"limit": limit}, follow=False)
        return self.table("/v1/runs", params | {"limit": RUNS_PER_REQUEST})

    def run(self, run_id: int) -> dict[str, Any]:
        """One run's metadata and tags."""
        return self._json("GET", f"/v1/runs/{run_id}")

    def delete_run(self, run_id: int) -> None:
        self._json("DELETE", f"/v1/runs/{run_id}")

    def edit_run(
        self, run_id: int, *, tags: Mapping[str, str | None] | None = None, **fields: object
    ) -> dict[str, Any]:
        """Set run fields (``None`` clears one) and tags (``None`` removes one); the run as it is now."""
        return self._json("PATCH", f"/v1/runs/{run_id}", json={**fields, "tags": dict(tags or {})})

    def kernels(self, run_id: int) -> pl.DataFrame:
        """The run's kernel rows in execution order."""
        return self.table(f"/v1/runs/{run_id}/kernels")

    def reingest(self, run_id: int) -> dict[str, Any]:
        return self._json("POST", f"/v1/runs/{run_id}/reingest")

    # ---------------------------------------------------------------- one run
    def breakdown(self, run_id: int, by: str = "operator") -> pl.DataFrame:
        """by: operator | attention_type | seq_len | component | kernel (paper Fig 7)."""
        return self.table(f"/v1/runs/{run_id}/breakdown", {"by": by})

    def normalized(self, run_id: int, reference: int, by: str = "operator") -> pl.DataFrame:
        return self.table(f"/v1/runs/{run_id}/normalized", {"reference": reference, "by": by})

    def attention_calls(self, run_id: int) -> pl.DataFrame:
        return self.table(f"/v1/runs/{run_id}/attention-calls")

    def seq_len_histogram(self, run_id: int, weight: str = "count", key: str = "seq_q") -> pl.DataFrame:
        return self.table(f"/v1/runs/{run_id}/seq-len-histogram", {"weight": weight, "key": key})

    def period(self, run_id: int) -> pl.DataFrame:
        return self.table(f"/v1/runs/{run_id}/period")

    def temporal_spatial(self, run_id: int) -> pl.DataFrame:
        return self.table(f"/v1/runs/{run_id}/temporal-spatial")

    def utilization(self, run_id: int) -> pl.DataFrame:
        return self.table(f"/v1/runs/{run_id}/utilization")

    def launches(self, run_id: int, by: str = "operator") -> pl.DataFrame:
        return self.table(f"/v1/runs/{run_id}/launches", {"by": by})

    def explain(self, run_id: int, view: str = "kernels", kernel: str | None = None) -> pl.DataFrame:
        """Why each kernel got its class (``tracehouse explain``): ``view`` kernels, summary or rules."""
        return self.table(f"/v1/runs/{run_id}/explain", {"view": view, "kernel": kernel})

    def roofline(self, run_id: int, by: str = "operator") -> pl.DataFrame:
        return self.table(f"/v1/runs/{run_id}/roofline", {"by": by})

    def operator_costs(self, run_id: int) -> pl.DataFrame:
        return self.table(f"/v1/runs/{run_id}/operator-costs")

    def counters(self, run_id: int) -> pl.DataFrame:
        """Nsight Compute counters per kernel launch (``tracehouse counters``)."""
        return self.table(f"/v1/runs/{run_id}/counter-roofline")

    def run_memory_model(
        self,
        run_id: int,
        *,
        latent_factor: int | None = None,
        unet_depth: int | None = None,
        downsample_factor: int = 2,
    ) -> pl.DataFrame:
        return self.table(
            f"/v1/runs/{run_id}/memory-model",
            {"latent_factor": latent_factor, "unet_depth": unet_depth, "downsample_factor": downsample_factor},
        )

    def idle(self, run_id: int, consecutive_kernel_delay_ns: int = 30_000) -> pl.DataFrame:
        """Idle time per device × stream: host wait, kernel wait, other (``tracehouse idle``)."""
        return self.table(f"/v1/runs/{run_id}/idle", {"consecutive_kernel_delay_ns": consecutive_kernel_delay_ns})

    def advice(self, run_id: int, rules: Iterable[str] | None = None) -> pl.DataFrame:
        """Findings ranked by estimated time saved (``tracehouse advise``)."""
        return self.table(f"/v1/runs/{run_id}/advice", {"rule": list(rules) if rules else None})

    def advice_rules(self) -> pl.DataFrame:
        return self.table("/v1/advice/rules")

    def critical_path(self, run_id: int, step: int | None = None, view: str = "operators") -> pl.DataFrame:
        return self.table(f"/v1/runs/{run_id}/critical-path", {"step": step, "view": view})

    def steps(self, run_id: int, view: str = "steps", by: str = "operator") -> pl.DataFrame:
        """A run cut into steps: ``view`` steps | summary | breakdown (``tracehouse steps``)."""
        return self.table(f"/v1/runs/{run_id}/steps", {"view": view, "by": by})

    def memory_peak(self, run_id: int) -> pl.DataFrame:
        return self.table(f"/v1/runs/{run_id}/memory-peak")

    def memory_timeline(self, run_id: int, points: int = 200, device: str | None = None) -> pl.DataFrame:
        """Allocated bytes over time per device (``tracehouse memory-timeline``)."""
        return self.table(f"/v1/runs/{run_id}/memory-timeline", {"points": points, "device": device})

    def memory_peak_live(self, run_id: int, device: str | None = None) -> pl.DataFrame:
        """What was live at the measured peak, per component (``tracehouse memory-peak --live``)."""
        return self.table(f"/v1/runs/{run_id}/memory-peak/live", {"device": device})

    # ---------------------------------------------------------------- across runs
    def diff(
        self, a: int | Iterable[int], b: int | Iterable[int], by: str = "operator", threshold: str = "5%"
    ) -> pl.DataFrame:
        """What changed from runs A to runs B (several ids: repeats), judged against the noise."""
        return self.table("/v1/diff", {"a": _ids(a), "b": _ids(b), "by": by, "threshold": threshold})

    def check(
        self,
        runs: int | Iterable[int],
        baseline: str,
        by: str = "operator",
        threshold: str = "5%",
        min_share: float = 0.05,
    ) -> pl.DataFrame:
        """The CI gate's table (``tracehouse check``): ``regressed`` rows first."""
        return self.table(
            "/v1/check",
            {"run": _ids(runs), "baseline": baseline, "by": by, "threshold": threshold, "min_share": min_share},
        )

    def baselines(self) -> pl.DataFrame:
        return self.table("/v1/baselines")

    def history(
        self,
        model: str,
        key: str = "total",
        metric: str = "time",
        by: str = "operator",
        order: str = "date",
        threshold: str = "5%",
        filters: Iterable[str] = (),
    ) -> pl.DataFrame:
        """One metric over alike runs, with change points (``tracehouse history``)."""
        return self.table(
            "/v1/history",
            {
                "model": model,
                "key": key,
                "metric": metric,
                "by": by,
                "order": order,
                "threshold": threshold,
                "filter": list(filters) or None,
            },
        )

    def matrix(self, metric: str = "share", by: str = "operator", **filters: str) -> pl.DataFrame:
        """Runs × operators in long form, the table behind a heatmap (``tracehouse matrix``):
        every cell (the server answers 1,000 a page: read here 10,000 a page, following its links)."""
        params = {"metric": metric, "by": by, **filters, "limit": MATRIX_CELLS_PER_REQUEST}
        return self.table("/v1/matrix", params)

    def jobs(self, straggler_factor: float = 1.05) -> pl.DataFrame:
        """Runs that are ranks of one job: per-rank step time, exposed communication, stragglers."""
        return self.table("/v1/jobs", {"straggler_factor": straggler_factor})

    def model_points(self, family: str | None = None) -> pl.DataFrame:
        """Fig 5: one point per model × device."""
        return self.table("/v1/suite/model-points", {"family": family})

    def ceilings(self) -> pl.DataFrame:
        """Fig 5's lines: every stored device's peaks."""
        return self.table("/v1/suite/ceilings")

    def compute_comm(self, model: str | None = None, by_world_size: bool = False) -> pl.DataFrame:
        """Fig 6: compute vs communication by GPU count."""
        return self.table("/v1/suite/compute-comm", {"model": model, "by_world_size": by_world_size})

    def compare(self, baseline: int, other: int, *, summary: bool = False, operator: str = "attention") -> pl.DataFrame:
        return self.table(
            "/v1/compare", {"baseline": baseline, "other": other, "summary": summary, "operator": operator}
        )

    def speedups(
        self, baseline: str = "baseline", other: str = "flash", *, model: str | None = None, hardware: str | None = None
    ) -> pl.DataFrame:
        """Table II: every stored baseline / optimised pair."""
        return self.table("/v1/speedups", {"baseline": baseline, "other": other, "model": model, "hardware": hardware})

    def sweep(
        self, model: str, knob: str, operators: Iterable[str] = ("attention", "conv"), **filters: object
    ) -> pl.DataFrame:
        return self.table(
            "/v1/sweep", {"model": model, "knob": knob, "operator": list(operators), "filter": _filters(filters)}
        )

    def hardware(self, model: str, reference: str = "slowest", **filters: object) -> pl.DataFrame:
        return self.table("/v1/hardware", {"model": model, "reference": reference, "filter": _filters(filters)})

    # ---------------------------------------------------------------- formulas
    def attention_flops(
        self, frames: Iterable[int], height: int, width: int, *, batch: int = 1, heads: int = 1, head_dim: int = 64
    ) -> pl.DataFrame:
        return self.table(
            "/v1/attention-flops",
            {
                "frames": list(frames),
                "height": height,
                "width": width,
                "batch": batch,
                "heads": heads,
                "head_dim": head_dim,
            },
        )

    def memory_model(
        self,
        image_size: int,
        latent_factor: int,
        text_length: int,
        unet_depth: int,
        *,
        downsample_factor: int = 2,
        bytes_per_element: int = 2,
        heads: int = 1,
        batch: int = 1,
    ) -> pl.DataFrame:
        return self.table(
            "/v1/memory-model",
            {
                "image_size": image_size,
                "latent_factor": latent_factor,
                "text_length": text_length,
                "unet_depth": unet_depth,
                "downsample_factor": downsample_factor,
                "bytes_per_element": bytes_per_element,
                "heads": heads,
                "batch": batch,
            },
        )

    # ---------------------------------------------------------------- fleet
    def fleet_summary(self, by: str = "family", phase: str | None = None) -> pl.DataFrame:
        return self.table("/v1/fleet/summary", {"by": by, "phase": phase})

    def ratio_spread(self, family: str = "tti", phase: str | None = None) -> pl.DataFrame:
        return self.table("/v1/fleet/ratio-spread", {"family": family, "phase": phase})

    def top_jobs(self, n: int = 20, phase: str | None = None) -> pl.DataFrame:
        return self.table("/v1/fleet/top-jobs", {"n": n, "phase": phase})

    def models(self) -> pl.DataFrame:
        return self.table("/v1/models")

    # ---------------------------------------------------------------- uploads and jobs
    def upload(
        self, path: str | Path, *, wait: bool | float = True, run_id: int | None = None, **meta: object
    ) -> dict[str, Any]:
        """Upload a trace (or an Nsight Compute run's folder, or a folder with one trace and its
        counters) as one run; ``meta`` are run metadata or tags (``model="stable-diffusion",
        attention_backend="flash", image_size=512``).  ``wait``: True waits up to 600 s, a number
        that many seconds, False not at all; the job comes back (``run_id`` once done).  A failed
        ingest raises its error."""
        from tracehouse.ingest.units import attach_plan, plan_units

        units, host = attach_plan(plan_units([Path(path)]), run_id)
        if len(units) > 1 and host is None:  # checked before anything is sent
            raise BadInput(f"{path} makes {len(units)} runs; upload_many() uploads several")
        timeout = 600.0 if wait is True else float(wait or 0)
        return self.upload_many([Path(path)], wait=timeout, run_id=run_id, **meta)[-1]

    def upload_many(
        self, paths: Iterable[str | Path], *, wait: float = 600, run_id: int | None = None, **meta: object
    ) -> list[dict[str, Any]]:
        """Upload files and folders as ``tracehouse upload`` does: one job per run."""
        pairs = [f"{key}={value}" for key, value in meta.items() if value is not None]
        jobs = upload_with(
            self._http,
            [Path(p) for p in paths],
            pairs,
            run_id=run_id,
            wait=wait > 0,
            progress=False,
            timeout_s=wait or 600,
        )
        for job in jobs:
            if job["status"] == "failed":
                raise BadTrace(f"{job['path']}: {job.get('error') or 'ingest failed'}")
        return jobs

    def job(self, job_id: int) -> dict[str, Any]:
        """An ingest job: ``status`` queued / running / done (with ``run_id``) / failed (``error``)."""
        return self._json("GET", f"/v1/jobs/{job_id}")

    def wait(self, job: int | Mapping[str, Any], timeout: float = 600) -> dict[str, Any]:
        """Poll a job (or its id) until done or failed, or ``timeout`` seconds have passed."""
        state = self.job(job) if isinstance(job, int) else dict(job)
        return wait_for_job(self._http, state, timeout)


def _ids(runs: int | Iterable[int]) -> list[int]:
    return [runs] if isinstance(runs, int) else list(runs)
