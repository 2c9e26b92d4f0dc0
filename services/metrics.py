"""The services' metrics, whichever way they are exported.

Standalone servers serve them with prometheus_client on their own HTTP port. Under Ray Serve,
replicas record the same metrics with `ray.util.metrics`, which Ray exports on each node's
metrics port (names gain Ray's `ray_` prefix there). Servicers call the functions below and
never know which.
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
RATIO_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class _Sink(Protocol):
    def started(self, service: str, method: str) -> None: ...

    def finished(self, service: str, method: str, code: str, seconds: float) -> None: ...

    def compute_per_music_second(self, service: str, ratio: float) -> None: ...

    def generations(self, change: int) -> None: ...

    def batch(self, jobs: int) -> None: ...


class _Prometheus:
    def __init__(self) -> None:
        self.requests = Counter("bgm_requests_total", "Requests by service, method and code",
                                ["service", "method", "code"])  # fmt: skip
        self.latency = Histogram("bgm_request_seconds", "Request latency",
                                 ["service", "method"], buckets=LATENCY_BUCKETS)  # fmt: skip
        self.in_flight = Gauge("bgm_requests_in_flight", "Requests being served",
                               ["service", "method"])  # fmt: skip
        self.ratio = Histogram("bgm_compute_seconds_per_music_second",
                               "Seconds of compute per second of music delivered", ["service"],
                               buckets=RATIO_BUCKETS)  # fmt: skip
        # Generations still computing: after a cancel this falls within a second (the work
        # stops at its next progress report), even though the request itself ended at once.
        self.running = Gauge("bgm_generations_running", "Generations still computing")
        self.batches = Histogram("bgm_generator_batch_jobs", "Pieces generated per batch",
                                 buckets=BATCH_BUCKETS)  # fmt: skip

    def started(self, service: str, method: str) -> None:
        self.in_flight.labels(service, method).inc()

    def finished(self, service: str, method: str, code: str, seconds: float) -> None:
        self.in_flight.labels(service, method).dec()
        self.latency.labels(service, method).observe(seconds)
        self.requests.labels(service, method, code).inc()

    def compute_per_music_second(self, service: str, ratio: float) -> None:
        self.ratio.labels(service).observe(ratio)

    def generations(self, change: int) -> None:
        self.running.inc(change)

    def batch(self, jobs: int) -> None:
        self.batches.observe(jobs)


class _Ray:
    def __init__(self) -> None:
        from ray.util import metrics

        self.requests = metrics.Counter(
            "bgm_requests_total", "Requests by service, method and code",
            tag_keys=("service", "method", "code"),
        )  # fmt: skip
        self.latency = metrics.Histogram("bgm_request_seconds", "Request latency",
                                         boundaries=list(LATENCY_BUCKETS),
                                         tag_keys=("service", "method"))  # fmt: skip
        self.in_flight = metrics.Gauge("bgm_requests_in_flight", "Requests being served",
                                       tag_keys=("service", "method"))  # fmt: skip
        self.ratio = metrics.Histogram(
            "bgm_compute_seconds_per_music_second",
            "Seconds of compute per second of music delivered",
            boundaries=list(RATIO_BUCKETS),
            tag_keys=("service",),
        )
        self.running = metrics.Gauge("bgm_generations_running", "Generations still computing")
        self.batches = metrics.Histogram("bgm_generator_batch_jobs", "Pieces generated per batch",
                                         boundaries=list(BATCH_BUCKETS))  # fmt: skip
        self._in_flight: dict[tuple[str, str], int] = {}
        self._running = 0

    def started(self, service: str, method: str) -> None:
        key = (service, method)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        self.in_flight.set(self._in_flight[key], tags={"service": service, "method": method})

    def finished(self, service: str, method: str, code: str, seconds: float) -> None:
        key = (service, method)
        self._in_flight[key] = self._in_flight.get(key, 1) - 1
        tags = {"service": service, "method": method}
        self.in_flight.set(self._in_flight[key], tags=tags)
        self.latency.observe(seconds, tags=tags)
        self.requests.inc(1.0, tags={**tags, "code": code})

    def compute_per_music_second(self, service: str, ratio: float) -> None:
        self.ratio.observe(ratio, tags={"service": service})

    def generations(self, change: int) -> None:
        self._running += change
        self.running.set(self._running)

    def batch(self, jobs: int) -> None:
        self.batches.observe(jobs)


_sink: Any = None


def _active() -> _Sink:
    global _sink
    if _sink is None:
        _sink = _Prometheus()
    return _sink


def export_through_ray() -> None:
    """Record through Ray's metrics from now on (called in a Ray Serve replica)."""
    global _sink
    if not isinstance(_sink, _Ray):
        _sink = _Ray()


def request_started(service: str, method: str) -> None:
    _active().started(service, method)


def request_finished(service: str, method: str, code: str, seconds: float) -> None:
    _active().finished(service, method, code, seconds)


def compute_per_music_second(service: str, ratio: float) -> None:
    _active().compute_per_music_second(service, ratio)


def generation_started(jobs: int) -> None:
    """A batch of `jobs` pieces starts (one generation in the running gauge)."""
    _active().generations(+1)
    _active().batch(jobs)


def generation_ended() -> None:
    _active().generations(-1)
