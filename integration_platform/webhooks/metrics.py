"""Receiver metrics in the Prometheus text format, without a client library.

Counts are per process: with ``--workers N`` each worker has its own, so scrape each receiver
process (or run one worker per container/unit, as the deploy files do) and sum in PromQL.
The ``source`` label takes configured source names only (``unknown`` otherwise), so a sender
cannot grow the number of series by inventing names.
"""

from __future__ import annotations

import bisect
from collections import Counter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def _labels(**labels: str) -> str:
    escaped = (
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for key, value in labels.items()
    )
    return "{" + ",".join(escaped) + "}"


class ReceiverMetrics:
    """Counters and one latency histogram, updated from the event loop only."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.rejected: Counter[tuple[str, str]] = Counter()
        self.stored: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self._bucket_counts = [0] * len(LATENCY_BUCKETS)
        self._count = 0
        self._sum = 0.0

    def observe_latency(self, seconds: float) -> None:
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        if index < len(self._bucket_counts):
            self._bucket_counts[index] += 1
        self._count += 1
        self._sum += seconds

    def render(self) -> str:
        lines = [
            "# HELP webhook_requests_total Webhook requests received, by source.",
            "# TYPE webhook_requests_total counter",
            *(f"webhook_requests_total{_labels(source=s)} {n}" for s, n in self.received.items()),
            "# HELP webhook_rejected_total Requests answered 4xx/5xx without storing, by reason.",
            "# TYPE webhook_rejected_total counter",
            *(
                f"webhook_rejected_total{_labels(source=s, reason=r)} {n}"
                for (s, r), n in self.rejected.items()
            ),
            "# HELP webhook_events_stored_total Events committed to the inbox.",
            "# TYPE webhook_events_stored_total counter",
            *(
                f"webhook_events_stored_total{_labels(source=s)} {n}"
                for s, n in self.stored.items()
            ),
            "# HELP webhook_events_duplicate_total Redelivered events acknowledged, not stored.",
            "# TYPE webhook_events_duplicate_total counter",
            *(
                f"webhook_events_duplicate_total{_labels(source=s)} {n}"
                for s, n in self.duplicates.items()
            ),
            "# HELP webhook_request_duration_seconds Time from request to answer.",
            "# TYPE webhook_request_duration_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS, self._bucket_counts, strict=True):
            cumulative += count
            lines.append(f'webhook_request_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
        lines += [
            f'webhook_request_duration_seconds_bucket{{le="+Inf"}} {self._count}',
            f"webhook_request_duration_seconds_sum {self._sum}",
            f"webhook_request_duration_seconds_count {self._count}",
        ]
        return "\n".join(lines) + "\n"
