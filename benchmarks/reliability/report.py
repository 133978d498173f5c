"""Results of the reliability checks and the table they print."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class CheckResult:
    """One check: how many cases were tried and passed, why the others failed, request latencies, figures.

    figures: named measurements shown in the table's last column (RSS growth in MB, ...).
    """

    name: str
    tried: int = 0
    passed: int = 0
    failures: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def record(self, case: str, problem: str | None, seconds: float | None = None) -> None:
        """Count one case: passed when `problem` is None, else remember "case: problem"."""
        self.tried += 1
        if seconds is not None:
            self.latencies_s.append(seconds)
        if problem is None:
            self.passed += 1
        else:
            self.failures.append(f"{case}: {problem}")

    @property
    def ok(self) -> bool:
        return self.tried > 0 and self.passed == self.tried

    @property
    def p95_s(self) -> float | None:
        return float(np.percentile(self.latencies_s, 95)) if self.latencies_s else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "tried": self.tried,
            "passed": self.passed,
            "failures": self.failures,
            "p95_latency_s": None if self.p95_s is None else round(self.p95_s, 3),
            "max_latency_s": round(max(self.latencies_s), 3) if self.latencies_s else None,
            "figures": self.figures,
        }


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"  # seconds to the hundredth, MB to a tenth
    return str(value)


def format_table(results: list[CheckResult], header: dict[str, Any]) -> str:
    """A Markdown table: check, tried, passed, failures, p95 latency, figures; then every failure listed."""
    lines = [f"- {key}: {value}" for key, value in header.items()]
    lines += ["", "| check | tried | passed | failures | p95 latency (s) | figures |", "|" + " --- |" * 6]
    for r in results:
        p95 = "-" if r.p95_s is None else f"{r.p95_s:.2f}"
        figures = ", ".join(f"{k} {_figure(v)}" for k, v in r.figures.items())
        lines.append(f"| {r.name} | {r.tried} | {r.passed} | {len(r.failures)} | {p95} | {figures} |")
    total_tried, total_passed = sum(r.tried for r in results), sum(r.passed for r in results)
    lines.append(f"| **all** | {total_tried} | {total_passed} | {total_tried - total_passed} | | |")
    failures = [f"- {r.name}: {failure}" for r in results for failure in r.failures]
    if failures:
        lines += ["", "Failures:", *failures]
    return "\n".join(lines)
