"""Is a 10 s forecast better than another? One test, one interval, used wherever skill is judged.

A 10 s label every 2 s makes neighbouring errors share most of their label, and volatility
clusters over minutes, so the loss differential of two forecasts is dependent far beyond a
few rows. The rows are therefore cut into **blocks of data time** (5 minutes by default), never
across a market or a gap in the data, and the blocks are the independent units:

- the statistic is the mean loss differential over its block-robust (cluster) standard error,
  the same number as an OLS of the differential on a constant with errors clustered by block
  (``statsmodels``' ``cov_type="cluster"``, checked in the unit tests);
- its p-value comes from a **wild block bootstrap** of that statistic with the null imposed
  (each block's sum of differentials flips sign with probability 1/2, the studentized mean is
  recomputed; every one of the 2^G sign patterns when there are at most 12 blocks, else 1,999
  drawn), which holds its size with a dozen blocks where resampling blocks with replacement
  does not: one calm or one wild block dominates those resamples;
- its interval is the set of mean differentials that bootstrap test does not reject, found by
  bisection from the side where 0 lies, so it excludes 0 exactly when ``p < alpha``;
- the headline skill is R²_OS against persistence, ``1 - SSE / sum(y²)`` on log returns,
  which is minus the summed differential over ``sum(y²)``: its interval is the differential's,
  rescaled, and so agrees with the test too.

Clark-West is given beside it for the nested comparison with persistence (a model whose
coefficients could all be zero): it asks whether the model carries information at all, where
the equal-loss test asks whether its answers are better; the gate promotes on the latter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BLOCK_MS = 300_000  # 5 minutes of data time per block: much longer than the 10 s label overlap
GAP_MS = 60_000  # rows further apart than this are not neighbours (a gap in the data, another file)
MIN_BLOCKS = 6  # fewer independent units than this: no verdict
BOOTSTRAP_REPS = 1999  # (reps + 1) * alpha is a whole number for alpha 0.05 and 0.01
ALPHA = 0.05


def json_figure(x: float | None) -> float | None:
    """A statistic for JSON: None for NaN or infinity (JSON has neither), else six significant digits
    (loss differentials of squared 10 s returns are ~1e-9: fixed decimals would print them as 0)."""
    return None if x is None or not math.isfinite(x) else float(f"{x:.6g}")


def skill_figures(times_ms: np.ndarray, y: np.ndarray, pred: np.ndarray) -> dict:
    """R²_OS against persistence of predicted log returns ``pred`` for realized ``y`` at data times
    ``times_ms`` (5-minute blocks), with its interval, p and RMSE ratio, as JSON figures."""
    if len(times_ms) == 0:
        return {"n": 0}
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    s = skill_vs_persistence(y, pred, time_blocks(np.asarray(times_ms)))
    base = float(np.sqrt(np.mean(y**2)))
    return {
        "n": len(y),
        "blocks": s.test.blocks,
        "r2_os": json_figure(s.r2_os),
        "r2_os_ci": [json_figure(s.r2_os_ci[0]), json_figure(s.r2_os_ci[1])],
        "pvalue": json_figure(s.test.pvalue),
        "rmse_ratio_vs_persistence": json_figure(float(np.sqrt(np.mean((y - pred) ** 2))) / base) if base > 0 else None,
    }


def time_blocks(
    ts_ms: np.ndarray, segment: np.ndarray | None = None, block_ms: int = BLOCK_MS, gap_ms: int = GAP_MS
) -> np.ndarray:
    """A block number per row: spans of ``block_ms`` of data time within one segment.

    A segment starts at the first row, at every change of ``segment`` (a market, a file) and
    after every jump of more than ``gap_ms`` between consecutive rows, so no block joins rows
    that were never neighbours. Rows must be in time order within a segment. A segment's last
    span shorter than half a block joins the span before it, so no block is a sliver.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    n = len(ts)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    new_segment = np.zeros(n, dtype=bool)
    new_segment[0] = True
    new_segment[1:] |= (np.diff(ts) > gap_ms) | (np.diff(ts) < 0)
    if segment is not None:
        seg = np.asarray(segment)
        new_segment[1:] |= seg[1:] != seg[:-1]
    blocks = np.empty(n, dtype=np.int64)
    next_id = 0
    starts = np.flatnonzero(new_segment).tolist() + [n]
    for lo, hi in zip(starts[:-1], starts[1:]):
        span = (ts[lo:hi] - ts[lo]) // block_ms
        last = int(span[-1])
        if last > 0 and ts[hi - 1] - ts[lo] - last * block_ms < block_ms // 2:
            span = np.minimum(span, last - 1)  # a trailing sliver joins the block before it
        blocks[lo:hi] = next_id + span
        next_id += int(span[-1]) + 1
    _, dense = np.unique(blocks, return_inverse=True)
    return dense.astype(np.int64)


def _block_sums(d: np.ndarray, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    count = int(blocks.max()) + 1 if len(blocks) else 0
    return np.bincount(blocks, weights=d, minlength=count), np.bincount(blocks, minlength=count).astype(np.float64)


def _studentized(sums: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and cluster-robust standard error along the last axis (blocks), with the G/(G-1) correction."""
    g = sums.shape[-1]
    total = sizes.sum(axis=-1)
    mean = sums.sum(axis=-1) / total
    resid = sums - sizes * mean[..., None]
    se = np.sqrt(g / (g - 1) * np.sum(resid**2, axis=-1)) / total
    return mean, se


@dataclass(frozen=True, slots=True)
class LossTest:
    """Mean of ``loss_a - loss_b`` (negative: a is better), its test and interval from one bootstrap."""

    n: int
    blocks: int
    mean_diff: float
    se: float
    stat: float  # mean_diff / se
    pvalue: float  # two-sided, wild block bootstrap; NaN: too few blocks or no variation
    ci: tuple[float, float]  # of mean_diff at 1 - alpha; excludes 0 exactly when pvalue < alpha
    alpha: float = ALPHA

    @property
    def significant(self) -> bool:
        return not math.isnan(self.pvalue) and self.pvalue < self.alpha

    @property
    def a_better(self) -> bool:
        return self.significant and self.mean_diff < 0


NAN2 = (float("nan"), float("nan"))
BISECTION_TOLERANCE = 1e-4  # of a standard error: the interval's ends are found to this precision
ENUMERATE_UP_TO = 12  # blocks: all 2^G sign patterns (4,096 at most) instead of random ones


def sign_patterns(blocks: int, reps: int, seed: int) -> tuple[np.ndarray, bool]:
    """Rademacher weights, one row per bootstrap draw, and whether they are every pattern there is."""
    if blocks <= ENUMERATE_UP_TO:
        codes = np.arange(2**blocks)[:, None] >> np.arange(blocks)
        return 1.0 - 2.0 * (codes & 1), True
    return np.random.default_rng(seed).choice([-1.0, 1.0], size=(reps, blocks)), False


class _NullBootstrap:
    """The wild block bootstrap's p-value for H0: mean differential = ``mu``, at any ``mu``."""

    def __init__(self, sums: np.ndarray, sizes: np.ndarray, reps: int, seed: int) -> None:
        self.total = float(sizes.sum())
        self.mean, self.se = (float(x) for x in _studentized(sums, sizes))
        weights, self.exhaustive = sign_patterns(len(sums), reps, seed)
        self.draws = len(weights)
        # Under H0 at mu the flipped block sums are w*S - mu*w*n: the draw's mean and its residuals
        # around it are linear in mu, so their squares are a quadratic in mu, precomputed once.
        a, b = weights * sums, weights * sizes
        self.a_mean, self.b_mean = a.sum(axis=1) / self.total, b.sum(axis=1) / self.total
        p, q = a - sizes * self.a_mean[:, None], b - sizes * self.b_mean[:, None]
        self.pp, self.pq, self.qq = np.sum(p * p, axis=1), np.sum(p * q, axis=1), np.sum(q * q, axis=1)
        self.scale = len(sums) / (len(sums) - 1)

    def pvalue(self, mu: float) -> float:
        stat = (self.mean - mu) / self.se
        boot_mean = self.a_mean - mu * self.b_mean
        boot_se = np.sqrt(np.maximum(self.scale * (self.pp - 2 * mu * self.pq + mu * mu * self.qq), 0.0)) / self.total
        with np.errstate(divide="ignore", invalid="ignore"):
            t_star = np.abs(boot_mean) / boot_se
        count = int(np.sum(np.nan_to_num(t_star, nan=np.inf) >= abs(stat) * (1 - 1e-12)))
        if self.exhaustive:  # the observed pattern is one of the rows
            return count / self.draws
        return (1 + count) / (self.draws + 1)

    def bound(self, alpha: float, side: float) -> float:
        """The interval's end on ``side`` (-1 lower, +1 upper) of the mean.

        Bisection between a rejected and a kept value. On the side where 0 lies, 0 itself is one
        end of the bracket, so the end falls between 0 and the mean when 0 is rejected and
        beyond 0 when it is kept: the interval and the test at 0 agree by construction.
        """
        keep = self.mean
        zero_side = (0.0 - self.mean) * side > 0
        if zero_side and self.pvalue(0.0) < alpha:
            reject = 0.0
        else:
            step = self.se * (4.0 if not zero_side else max(4.0, abs(self.mean) / self.se * 2))
            reject = self.mean + side * step
            for _ in range(60):
                if self.pvalue(reject) < alpha:
                    break
                keep, reject = reject, self.mean + side * 2 * abs(reject - self.mean)
            else:
                return side * math.inf
            if zero_side and (keep - 0.0) * side < 0:
                keep = 0.0  # 0 is kept: the end lies beyond it
        while abs(keep - reject) > BISECTION_TOLERANCE * self.se:
            mid = (keep + reject) / 2
            if self.pvalue(mid) < alpha:
                reject = mid
            else:
                keep = mid
        return keep


def loss_test(
    diff: np.ndarray, blocks: np.ndarray, alpha: float = ALPHA, reps: int = BOOTSTRAP_REPS, seed: int = 20240808
) -> LossTest:
    """Test mean(``diff``) = 0 with ``blocks`` (``time_blocks``) as the independent units."""
    d = np.asarray(diff, dtype=np.float64)
    n = len(d)
    sums, sizes = _block_sums(d, np.asarray(blocks, dtype=np.int64))
    g = len(sums)
    if g < MIN_BLOCKS:
        mean = float(d.mean()) if n else float("nan")
        return LossTest(n, g, mean, float("nan"), float("nan"), float("nan"), NAN2, alpha)
    boot = _NullBootstrap(sums, sizes, reps, seed)
    if not boot.se > 0:
        return LossTest(n, g, boot.mean, boot.se, float("nan"), float("nan"), NAN2, alpha)
    ci = (boot.bound(alpha, -1.0), boot.bound(alpha, 1.0))
    return LossTest(n, g, boot.mean, boot.se, boot.mean / boot.se, boot.pvalue(0.0), ci, alpha)


def r2_os(y: np.ndarray, pred: np.ndarray) -> float:
    """Out-of-sample R² against persistence (which predicts a zero return): 1 - SSE / sum(y²)."""
    denominator = float(np.sum(np.square(y)))
    return 1.0 - float(np.sum(np.square(y - pred))) / denominator if denominator > 0 else float("nan")


@dataclass(frozen=True, slots=True)
class Skill:
    """A return forecast against persistence on the same rows, squared log-return loss."""

    r2_os: float
    r2_os_ci: tuple[float, float]  # the equal-loss test's interval, rescaled: excludes 0 iff it rejects
    test: LossTest  # loss(model) - loss(persistence); negative mean: the model is better
    clark_west_pvalue: float  # one-sided: the model carries information (nested comparison)

    @property
    def better_than_persistence(self) -> bool:
        return self.test.a_better


def skill_vs_persistence(
    y: np.ndarray, pred: np.ndarray, blocks: np.ndarray, alpha: float = ALPHA, reps: int = BOOTSTRAP_REPS
) -> Skill:
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    test = loss_test(np.square(y - pred) - np.square(y), blocks, alpha, reps)
    sum_y2 = float(np.sum(np.square(y)))
    if sum_y2 > 0 and len(y):
        scale = len(y) / sum_y2  # R²_OS = -mean_diff * n / sum(y²)
        r2_ci = (-test.ci[1] * scale, -test.ci[0] * scale)
    else:
        r2_ci = NAN2
    # Clark-West: loss(persistence) - [loss(model) - pred²] = 2 y pred; H1: its mean is positive
    cw = loss_test(-2.0 * y * pred, blocks, alpha, reps)
    cw_p = float("nan") if math.isnan(cw.pvalue) else (cw.pvalue / 2 if cw.mean_diff < 0 else 1 - cw.pvalue / 2)
    return Skill(r2_os(y, pred), r2_ci, test, cw_p)
