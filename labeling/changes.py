"""Change detection on behaviour series, with a false-alarm rate you set: pure code.

Each series (one model's measure over event-time windows, from `fingerprints.windowed`) gets a
two-sided CUSUM on standardised window means. A baseline is pooled from the first
`warmup_windows` full windows; each later window adds (mean - baseline) / standard error - k to
the upper sum (and the mirror to the lower one); an alarm fires when a sum passes h. After an
alarm the series starts over, with a new baseline from the windows after it, so the changed
behaviour becomes the new normal.

h comes from the false-alarm rate: Siegmund's approximation gives the mean run length between
false alarms of a CUSUM with reference k and threshold h on unit-variance steps; the rate per
model per week is split evenly over the model's series, measures and both directions, and h is
the threshold whose run length matches. `bench/model_drift.py` checks the rate on simulated
traffic with no change.

An alarm names the series, the measure, the estimated change time (the window after the sum was
last zero), the alarm time (the end of the window that raised it), the means before and after,
the change with a 95% interval and the confidence of a two-sample test between the two segments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from flywheel_feedback.labeling.fingerprints import SERIES_KEYS, Z95

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class DetectorConfig:
    false_alarms_per_week: float = 0.01  # per model (all its series, measures and directions together)
    window: timedelta = timedelta(hours=1)
    warmup_windows: int = 36
    k: float = 1.0  # reference value, in standard errors of a window mean: half the shift it is tuned for
    min_window_n: int = 30  # windows with fewer observations are skipped
    min_share: float = 0.01  # a share's variance is taken at least at this rate, so rare events stay rare alarms

    def __post_init__(self) -> None:
        if not 0 < self.false_alarms_per_week < 100:
            raise ValueError(f"expected a false-alarm rate per week in (0, 100), got {self.false_alarms_per_week}")
        if self.warmup_windows < 2 or self.k <= 0 or self.window <= timedelta(0):
            raise ValueError("expected warmup_windows >= 2, k > 0 and a positive window")


@dataclass(frozen=True)
class Alarm:
    series: dict[str, str | None]
    measure: str
    direction: str  # "up" or "down"
    changed_at: datetime
    alarmed_at: datetime
    before: float
    after: float
    change: float
    ci_low: float
    ci_high: float
    confidence: float
    statistic: float
    threshold: float

    def row(self) -> dict[str, Any]:
        return {**self.series, **{k: v for k, v in self.__dict__.items() if k != "series"}}


def run_length(h: float, k: float) -> float:
    """Siegmund's mean run length of a one-sided CUSUM with reference k and threshold h on N(0, 1) steps."""
    b = h + 1.166
    return (math.exp(2 * k * b) - 2 * k * b - 1) / (2 * k * k)


def threshold_for(arl0: float, k: float) -> float:
    """The h whose in-control run length is `arl0` windows (bisection: run_length grows with h)."""
    low, high = 0.0, 1.0
    while run_length(high, k) < arl0:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if run_length(mid, k) < arl0 else (low, mid)
    return high


def model_threshold(config: DetectorConfig, series_measures: int) -> float:
    """h for one direction of one of a model's `series_measures` series-and-measure pairs."""
    windows_per_week = WEEK / config.window
    arl0 = windows_per_week * 2 * max(series_measures, 1) / config.false_alarms_per_week
    return threshold_for(arl0, config.k)


def detect(windows: pl.DataFrame, config: DetectorConfig, keys: tuple[str, ...] = SERIES_KEYS) -> list[Alarm]:
    """Every alarm over the series in `windows` (keys, measure, kind, window_start, n, mean, var)."""
    model_keys = [k for k in ("model_id", "model_version", "provider") if k in keys]
    per_model = windows.group_by(model_keys).agg(pl.struct(*keys, "measure").n_unique().alias("pairs"))
    thresholds = {tuple(r[k] for k in model_keys): model_threshold(config, r["pairs"])
                  for r in per_model.iter_rows(named=True)}
    alarms: list[Alarm] = []
    for key, group in windows.sort("window_start").group_by(*keys, "measure", maintain_order=True):
        series = dict(zip(keys, key[:-1], strict=True))
        h = thresholds[tuple(series[k] for k in model_keys)]
        rows = group.filter(pl.col("n") >= config.min_window_n).select("window_start", "n", "mean", "var", "kind")
        alarms.extend(_cusum(series, str(key[-1]), rows.rows(), h, config))
    return sorted(alarms, key=lambda a: a.alarmed_at)


def _pool(rows: list[tuple[Any, ...]]) -> tuple[int, float, float]:
    n = int(sum(r[1] for r in rows))
    mean = float(sum(r[1] * r[2] for r in rows)) / n
    var = float(sum(r[1] * ((r[3] or 0.0) + (r[2] - mean) ** 2) for r in rows)) / n
    return n, mean, var


def _variance(kind: str, mean: float, var: float, config: DetectorConfig) -> float:
    if kind == "share":
        rate = min(max(mean, config.min_share), 1 - config.min_share)
        return rate * (1 - rate)
    return max(var, 1e-9)


def _dispersion(rows: list[tuple[Any, ...]], mean: float, var: float) -> float:
    """How much more the baseline's window means scatter than independent observations would (at least 1).

    Real traffic clusters (a burst of one topic, one user's session); ignoring that would make every
    window look like a change."""
    scatter = float(sum(r[1] * (r[2] - mean) ** 2 for r in rows)) / (len(rows) - 1)
    return max(1.0, scatter / var)


def _cusum(series: dict[str, Any], measure: str, rows: list[tuple[Any, ...]], h: float, config: DetectorConfig
           ) -> list[Alarm]:
    alarms: list[Alarm] = []
    start = 0
    while start + config.warmup_windows < len(rows):
        base = rows[start:start + config.warmup_windows]
        n0, mu0, raw_var0 = _pool(base)
        kind = str(base[0][4])
        var0 = _variance(kind, mu0, raw_var0, config)
        var0 *= _dispersion(base, mu0, var0)
        upper = lower = 0.0
        up_from = down_from = start + config.warmup_windows
        alarm_at: int | None = None
        zs: list[float] = []
        for j in range(start + config.warmup_windows, len(rows)):
            _, n, mean, _, _ = rows[j]
            z = (mean - mu0) / math.sqrt(var0 * (1 / n + 1 / n0))
            zs.append(z)
            upper = max(0.0, upper + z - config.k)
            lower = max(0.0, lower - z - config.k)
            if upper == 0.0:
                up_from = j + 1
            if lower == 0.0:
                down_from = j + 1
            if upper > h or lower > h:
                alarm_at = j
                break
        if alarm_at is None:
            break
        direction = "up" if upper > h else "down"
        first = _change_point(zs, start + config.warmup_windows,
                              min(up_from if direction == "up" else down_from, alarm_at), alarm_at)
        n1, mu1, raw_var1 = _pool(rows[first:alarm_at + 1])
        var1 = _variance(kind, mu1, raw_var1, config)
        se = math.sqrt(var0 / n0 + var1 / n1)
        change = mu1 - mu0
        alarms.append(Alarm(
            series=series, measure=measure, direction=direction, changed_at=rows[first][0],
            alarmed_at=rows[alarm_at][0] + config.window, before=mu0, after=mu1, change=change,
            ci_low=change - Z95 * se, ci_high=change + Z95 * se,
            confidence=1 - math.erfc(abs(change) / se / math.sqrt(2)), statistic=max(upper, lower), threshold=h,
        ))
        start = alarm_at + 1
    return alarms


def _change_point(zs: list[float], offset: int, earliest: int, alarm_at: int) -> int:
    """The most likely first changed window between `earliest` (where the CUSUM last left zero) and the alarm:
    the start of the segment whose mean standardised shift is most significant (the GLR estimate). The CUSUM's
    own estimate runs early when the sum drifted up by chance before the change."""
    best, best_score = earliest, -1.0
    total = 0.0
    for j in range(alarm_at, earliest - 1, -1):
        total += zs[j - offset]
        score = abs(total) / math.sqrt(alarm_at - j + 1)
        if score > best_score:
            best, best_score = j, score
    return best


def alarms_frame(alarms: list[Alarm]) -> pl.DataFrame:
    if not alarms:
        return pl.DataFrame(schema={"measure": pl.String, "direction": pl.String,
                                    "changed_at": pl.Datetime("us", "UTC"), "alarmed_at": pl.Datetime("us", "UTC"),
                                    "before": pl.Float64, "after": pl.Float64, "change": pl.Float64,
                                    "ci_low": pl.Float64, "ci_high": pl.Float64, "confidence": pl.Float64})
    return pl.DataFrame([a.row() for a in alarms])
