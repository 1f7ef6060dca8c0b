"""What every benchmark of ``make bench`` receives: the run's options, database and servers."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    LoadOptions,
    LoadStats,
    ServerProcess,
    allow_local_simulators,
    free_port,
)
from bench.seed import Seeded

# the token the bench's servers take for /metrics (the environment's when it names one: the
# tests that run the bench set theirs, which tests/support/live_flow.py sends)
METRICS_TOKEN = os.environ.setdefault("METRICS_TOKEN", "bench-metrics")

MAX_SAMPLES_KEPT = 20_000  # per series in latencies.json


@dataclass
class BenchContext:
    quick: bool
    load: LoadOptions
    results_dir: Path
    database_url: str = ""
    secrets_key: str = ""
    seeded: Seeded | None = None
    write_floor: float | None = None  # tx/s of bench/write_floor.py in this run, when it ran
    stats: dict[str, LoadStats] = field(default_factory=dict)
    series: dict[str, dict[str, Any]] = field(default_factory=dict)
    _app: ServerProcess | None = None
    _baseline: ServerProcess | None = None

    @property
    def data(self) -> Seeded:
        assert self.seeded is not None, "this benchmark needs the seeded database"
        return self.seeded

    def app_environment(self) -> dict[str, str]:
        """The environment the supplygraph server gets (REDIS_URL and the rest pass through).

        The response cache is off: benchmarks of query execution measure the work, not a repeat
        answered from memory (``repeated_reads`` starts its own server with the cache on).
        """
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "SECRETS_KEY": self.secrets_key,
            "LOG_LEVEL": "WARNING",
            "RESPONSE_CACHE": "false",
            "OUTBOUND_ALLOWED_HOSTS": allow_local_simulators(),
            "METRICS_TOKEN": METRICS_TOKEN,
        }

    async def app_server(self) -> ServerProcess:
        """supplygraph as ``make run`` serves it (``python main.py serve``), started once."""
        if self._app is None:
            env = {**self.app_environment(), "HOST": "127.0.0.1", "PORT": str(free_port())}
            server = ServerProcess(
                "supplygraph", [PYTHON, "main.py", "serve"], env, self.results_dir / "server.log"
            )
            self._app = server
            await server.start()
        return self._app

    async def baseline_server(self) -> ServerProcess:
        """``bench/baseline_app.py`` under uvicorn, started once."""
        if self._baseline is None:
            env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(free_port())}
            server = ServerProcess(
                "baseline app",
                [PYTHON, "bench/baseline_app.py"],
                env,
                self.results_dir / "baseline.log",
            )
            self._baseline = server
            await server.start()
        return self._baseline

    def keep(self, name: str, benchmark: str, role: str, stats: LoadStats) -> None:
        """Remember a load run (for baselines of later benchmarks and for latencies.json)."""
        self.stats[name] = stats
        samples = stats.samples_ms
        if len(samples) > MAX_SAMPLES_KEPT:
            samples = random.Random(0).sample(samples, MAX_SAMPLES_KEPT)
        self.series[name] = {
            "benchmark": benchmark,
            "role": role,
            "unit": "ms",
            "requests_per_second": round(stats.rate, 1),
            "p50": round(stats.p50_ms, 3),
            "p99": round(stats.p99_ms, 3),
            "samples": sorted(round(s, 3) for s in samples),
        }

    def stop_servers(self) -> None:
        for server in (self._app, self._baseline):
            if server is not None:
                server.stop()
        self._app = self._baseline = None
