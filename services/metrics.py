"""The services' metrics, whichever way they are exported.

Standalone servers serve them with prometheus_client on their own HTTP port. Under Ray Serve,
replicas record the same metrics with `ray.util.metrics`, which Ray exports on each node's
metrics port (names gain Ray's `ray_` prefix there). Servicers call the functions below and
never know which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

# Up to an hour: a Score of a long video may take the gateway's limits on its calls (900 s
# analysing, 1800 s generating); 900 s had been the top bucket.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)
RATIO_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class _Sink(Protocol):
    def started(self, service: str, method: str) -> None: ...

    def finished(
        self, service: str, method: str, code: str, seconds: float, tenant: str
    ) -> None: ...

    def compute_per_music_second(self, service: str, ratio: float) -> None: ...

    def generations(self, change: int) -> None: ...

    def batch(self, jobs: int) -> None: ...

    def audio_held(self, service: str, change: int) -> None: ...

    def turn_waited(self, service: str, seconds: float) -> None: ...


@dataclass(frozen=True)
class _Metric:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    # Histogram buckets (none for counters and gauges).
    buckets: tuple[float, ...] = ()


# The same metrics under both exporters.
# `tenant`: a tenant the auth config lists, "other" for any other, "" with auth off (so the
# label's values stay as few as the config's tenants).
REQUESTS = _Metric("bgm_requests_total", "Requests by service, method, code and tenant",
                   ("service", "method", "code", "tenant"))  # fmt: skip
# By status code: refusals answered at once had swamped the served requests' figures (387 of
# 403 Scores under 0.05 s in a review's run).
LATENCY = _Metric("bgm_request_seconds", "Request latency by service, method and code",
                  ("service", "method", "code"), LATENCY_BUCKETS)  # fmt: skip
IN_FLIGHT = _Metric("bgm_requests_in_flight", "Requests being served", ("service", "method"))
RATIO = _Metric("bgm_compute_seconds_per_music_second",
                "Seconds of compute per second of music delivered", ("service",),
                RATIO_BUCKETS)  # fmt: skip
# Generations still computing: after a cancel this falls within a second (the work stops at
# its next progress report), even though the request itself ended at once.
RUNNING = _Metric("bgm_generations_running", "Generations still computing")
BATCHES = _Metric("bgm_generator_batch_jobs", "Pieces generated per batch", (), BATCH_BUCKETS)
# The requests' shares of the service's audio budget held now (gateway/generator
# .audio_budget_bytes): at the budget, more requests wait.
AUDIO_HELD = _Metric("bgm_audio_held_bytes", "Bytes of the audio budget requests hold",
                     ("service",))  # fmt: skip
# How long requests wait for the service's capacity (max_concurrent) before their work starts:
# the queue an autoscaler or an operator reads (request latency lumps it with the work).
TURN_WAIT = _Metric("bgm_turn_wait_seconds",
                    "Seconds a request waited for its turn before its work started",
                    ("service",), LATENCY_BUCKETS)  # fmt: skip


class _Prometheus:
    def __init__(self) -> None:
        self.requests = Counter(REQUESTS.name, REQUESTS.help, REQUESTS.labels)
        self.latency = Histogram(LATENCY.name, LATENCY.help, LATENCY.labels,
                                 buckets=LATENCY.buckets)  # fmt: skip
        self.in_flight = Gauge(IN_FLIGHT.name, IN_FLIGHT.help, IN_FLIGHT.labels)
        self.ratio = Histogram(RATIO.name, RATIO.help, RATIO.labels, buckets=RATIO.buckets)
        self.running = Gauge(RUNNING.name, RUNNING.help)
        self.batches = Histogram(BATCHES.name, BATCHES.help, buckets=BATCHES.buckets)
        self.audio = Gauge(AUDIO_HELD.name, AUDIO_HELD.help, AUDIO_HELD.labels)
        self.turn_wait = Histogram(TURN_WAIT.name, TURN_WAIT.help, TURN_WAIT.labels,
                                   buckets=TURN_WAIT.buckets)  # fmt: skip

    def started(self, service: str, method: str) -> None:
        self.in_flight.labels(service, method).inc()

    def finished(self, service: str, method: str, code: str, seconds: float, tenant: str) -> None:
        self.in_flight.labels(service, method).dec()
        self.latency.labels(service, method, code).observe(seconds)
        self.requests.labels(service, method, code, tenant).inc()

    def compute_per_music_second(self, service: str, ratio: float) -> None:
        self.ratio.labels(service).observe(ratio)

    def generations(self, change: int) -> None:
        self.running.inc(change)

    def batch(self, jobs: int) -> None:
        self.batches.observe(jobs)

    def audio_held(self, service: str, change: int) -> None:
        self.audio.labels(service).inc(change)

    def turn_waited(self, service: str, seconds: float) -> None:
        self.turn_wait.labels(service).observe(seconds)


class _Ray:
    def __init__(self) -> None:
        from ray.util import metrics

        self.requests = metrics.Counter(REQUESTS.name, REQUESTS.help, tag_keys=REQUESTS.labels)
        self.latency = metrics.Histogram(LATENCY.name, LATENCY.help,
                                         boundaries=list(LATENCY.buckets),
                                         tag_keys=LATENCY.labels)  # fmt: skip
        self.in_flight = metrics.Gauge(IN_FLIGHT.name, IN_FLIGHT.help, tag_keys=IN_FLIGHT.labels)
        self.ratio = metrics.Histogram(RATIO.name, RATIO.help,
                                       boundaries=list(RATIO.buckets),
                                       tag_keys=RATIO.labels)  # fmt: skip
        self.running = metrics.Gauge(RUNNING.name, RUNNING.help)
        self.batches = metrics.Histogram(BATCHES.name, BATCHES.help,
                                         boundaries=list(BATCHES.buckets))  # fmt: skip
        self.audio = metrics.Gauge(AUDIO_HELD.name, AUDIO_HELD.help, tag_keys=AUDIO_HELD.labels)
        self.turn_wait = metrics.Histogram(TURN_WAIT.name, TURN_WAIT.help,
                                           boundaries=list(TURN_WAIT.buckets),
                                           tag_keys=TURN_WAIT.labels)  # fmt: skip
        self._in_flight: dict[tuple[str, str], int] = {}
        self._running = 0
        self._audio: dict[str, int] = {}

    def started(self, service: str, method: str) -> None:
        key = (service, method)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        self.in_flight.set(self._in_flight[key], tags={"service": service, "method": method})

    def finished(self, service: str, method: str, code: str, seconds: float, tenant: str) -> None:
        key = (service, method)
        self._in_flight[key] = self._in_flight.get(key, 1) - 1
        tags = {"service": service, "method": method}
        self.in_flight.set(self._in_flight[key], tags=tags)
        self.latency.observe(seconds, tags={**tags, "code": code})
        self.requests.inc(1.0, tags={**tags, "code": code, "tenant": tenant})

    def compute_per_music_second(self, service: str, ratio: float) -> None:
        self.ratio.observe(ratio, tags={"service": service})

    def generations(self, change: int) -> None:
        self._running += change
        self.running.set(self._running)

    def batch(self, jobs: int) -> None:
        self.batches.observe(jobs)

    def audio_held(self, service: str, change: int) -> None:
        self._audio[service] = self._audio.get(service, 0) + change
        self.audio.set(self._audio[service], tags={"service": service})

    def turn_waited(self, service: str, seconds: float) -> None:
        self.turn_wait.observe(seconds, tags={"service": service})


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


def request_finished(
    service: str, method: str, code: str, seconds: float, tenant: str = ""
) -> None:
    _active().finished(service, method, code, seconds, tenant)


def compute_per_music_second(service: str, ratio: float) -> None:
    _active().compute_per_music_second(service, ratio)


def generation_started(jobs: int) -> None:
    """A batch of `jobs` pieces starts (one generation in the running gauge)."""
    _active().generations(+1)
    _active().batch(jobs)


def generation_ended() -> None:
    _active().generations(-1)


def audio_held(service: str, change: int) -> None:
    """A request took (+) or let go (-) `change` bytes of the service's audio budget."""
    _active().audio_held(service, change)


def turn_waited(service: str, seconds: float) -> None:
    """A request of `service` waited `seconds` for its turn (its first; not the waits of a
    turn given way to another caller and taken again)."""
    _active().turn_waited(service, seconds)
