"""One node's Prometheus metrics: a registry every capability adds to with one line.

Each node owns one :class:`Metrics` (``ctx.metrics``), with its own prometheus-client
``CollectorRegistry`` (so two nodes in one test process never share counters). The node's
HTTP endpoint serves :meth:`Metrics.render` at ``/metrics``.

Adding a metric is one line at the place where the thing happens; the family is created on
first use and the same object comes back on every later call (also from a restarted actor)::

    self.ctx.metrics.counter("switchover_auth_failures_total", "CURVE handshakes refused", ("peer",)).labels(
        peer=address).inc()
    self.ctx.metrics.gauge("switchover_ds_replication_lag_revisions", "Revisions the backup is behind").set(lag)
    self.ctx.metrics.histogram("switchover_file_replication_seconds", "Time to copy one file").observe(dt)

Values that already live somewhere (the role, endpoint counters, the supervisor's restart counts)
are read at scrape time instead, through :meth:`Metrics.add_collector`.

Names follow Prometheus conventions, checked here: the ``switchover_`` prefix, base units
(``_seconds``, ``_bytes``), counters end in ``_total``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

PREFIX = "switchover_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# round trips on a LAN: 0.5 ms .. 5 s
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
M = TypeVar("M", Counter, Gauge, Histogram)


class MetricNameError(ValueError):
    """A metric name that breaks the conventions, or one name used for two different metrics."""


class _Callback(Collector):
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return list(self._collect())


class Metrics:
    """One node's metric families by name; thread-safe get-or-create."""

    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: they double every counter for nothing here
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._families: dict[str, tuple[Any, tuple[str, ...]]] = {}

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """A counter (``name`` ends in ``_total``)."""
        if not name.endswith("_total"):
            raise MetricNameError(f"counter {name!r}: a counter's name ends in _total")
        return self._get(Counter, name, documentation, labels)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return self._get(Gauge, name, documentation, labels)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        return self._get(Histogram, name, documentation, labels, buckets=tuple(buckets))

    def add_collector(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Families computed at each scrape by ``collect`` (for values that already live elsewhere)."""
        self.registry.register(_Callback(collect))

    def render(self) -> bytes:
        """The Prometheus text exposition of every family."""
        return generate_latest(self.registry)

    def _get(self, cls: type[M], name: str, documentation: str, labels: Sequence[str], **kw: Any) -> M:
        check_name(name)
        label_names = tuple(labels)
        with self._lock:
            known = self._families.get(name)
            if known is not None:
                family, known_labels = known
                if not isinstance(family, cls) or known_labels != label_names:
                    raise MetricNameError(
                        f"metric {name!r} is already a {type(family).__name__.lower()} with labels "
                        f"{list(known_labels)}; asked for a {cls.__name__.lower()} with labels {list(label_names)}"
                    )
                result: M = family
                return result
            # prometheus-client appends _total itself
            base = name.removesuffix("_total") if cls is Counter else name
            created = cls(base, documentation, label_names, registry=self.registry, **kw)
            self._families[name] = (created, label_names)
            return created


def check_name(name: str) -> None:
    if not name.startswith(PREFIX) or not _NAME.match(name):
        raise MetricNameError(
            f"metric {name!r}: expected the prefix {PREFIX!r} then lower-case letters, digits and underscores"
        )
