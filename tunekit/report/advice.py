"""What a tuner would tell you after looking at a study. Torch-free; reads only the study.

Each rule is deliberately conservative (it stays silent unless the evidence is plain), because
advice that fires on noise teaches users to ignore it.
"""

from __future__ import annotations

import math
from typing import Any

import tunekit.reasons as reasons  # the module itself: the package root (and its lazy load()) stays out
from tunekit.config.space import SearchSpace

EDGE = 0.05  # within 5% of a range end (in log space for log ranges)
NEGLIGIBLE = 0.02  # share of the metric's variance below which a parameter may as well be fixed
TRIALS_PER_PARAM = 10  # TPE's own start-up is 10 random trials; a model of d dimensions needs more


def _position(value: float, low: float, high: float, log: bool) -> float:
    if log:
        value, low, high = math.log(value), math.log(low), math.log(high)
    return 0.5 if high == low else (value - low) / (high - low)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def edge_of_range(space: dict, trials: list[dict], best: dict | None) -> list[str]:
    if not best:
        return []
    out = []
    for key, dist in space.items():
        if dist["kind"] not in ("float", "int") or key not in best["params"]:
            continue
        value = best["params"][key]
        if dist["kind"] == "int" and dist["high"] - dist["low"] < 4:
            continue  # a handful of integers: every value is an "edge"
        pos = _position(value, dist["low"], dist["high"], dist["log"])
        if pos >= 1 - EDGE:
            out.append(
                f"{key}: the best value {_fmt(value)} sits at the top of its range [{_fmt(dist['low'])}, {_fmt(dist['high'])}]; "
                f"raise `high` (the optimum may lie beyond)"
            )
        elif pos <= EDGE:
            out.append(
                f"{key}: the best value {_fmt(value)} sits at the bottom of its range [{_fmt(dist['low'])}, {_fmt(dist['high'])}]; "
                f"lower `low` (the optimum may lie beyond)"
            )
    return out


def negligible(importance: dict[str, float], n_complete: int) -> list[str]:
    if n_complete < 10:
        return []
    return [
        f"{key}: barely matters here (importance {share:.2f}); fix it and spend the trials elsewhere"
        for key, share in importance.items()
        if share < NEGLIGIBLE
    ]


def divergence_region(space: dict, trials: list[dict]) -> list[str]:
    """A threshold beyond which most trials diverge: `lr > x failed 5 of 6 times`."""
    out = []
    finished = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED", "FAIL")]
    for key, dist in space.items():
        if dist["kind"] not in ("float", "int"):
            continue
        points = sorted(
            (t["params"][key], t["state"] == "FAIL" and t.get("reason") in reasons.DIAGNOSTIC)
            for t in finished
            if key in t["params"]
        )
        if len(points) < 6 or sum(d for _, d in points) < 3:
            continue
        best_claim = None
        for side in ("above", "below"):
            for i in range(1, len(points)):
                region = points[i:] if side == "above" else points[:i]
                rest = points[:i] if side == "above" else points[i:]
                failed = sum(d for _, d in region)
                if (
                    len(region) >= 3
                    and failed / len(region) >= 0.8
                    and sum(d for _, d in rest) / max(1, len(rest)) <= 0.3
                ):
                    cut = points[i][0] if side == "above" else points[i - 1][0]
                    claim = (len(region), side, cut, failed)
                    # The region with the most failures, and among those the purest: "5 of 5" beats "5 of 6".
                    if best_claim is None or (failed, failed / len(region)) > (
                        best_claim[3],
                        best_claim[3] / best_claim[0],
                    ):
                        best_claim = claim
        if best_claim:
            n, side, cut, failed = best_claim
            sign, bound = (">=", "high") if side == "above" else ("<=", "low")
            out.append(
                f"{key} {sign} {_fmt(cut)} diverged in {failed} of {n} trials; move `{bound}` to exclude that region"
            )
    return out


def too_few_trials(space: dict, n_informative: int, n_finished: int, size: int | None) -> list[str]:
    if not space:
        return []
    if size is not None and n_finished >= size:
        return []  # every distinct config has been tried: there is nothing to continue with
    needed = TRIALS_PER_PARAM * len(space)
    if size is not None:
        needed = min(needed, size)
    if n_informative >= needed:
        return []
    return [
        f"{n_informative} completed or pruned trials for {len(space)} searched parameters: a sampler needs about "
        f"{needed} to map this space; continue with --trials {needed}"
    ]


def advise(summary: dict[str, Any], space: dict) -> list[str]:
    trials, best = summary["trials"], summary.get("best")
    states = summary["states"]
    n_informative = states["COMPLETE"] + states["PRUNED"]  # pruned trials inform the sampler too
    n_finished = n_informative + states["FAIL"]
    size = SearchSpace.from_fingerprint(space).size() if space else None
    return (
        edge_of_range(space, trials, best)
        + divergence_region(space, trials)
        + negligible(summary.get("importance", {}), states["COMPLETE"])
        + too_few_trials(space, n_informative, n_finished, size)
    )


def sparkline(values: list[float], maximize: bool, width: int = 40) -> str:
    """Best-so-far over completed trials, one block character each (sampled down to `width`)."""
    if not values:
        return ""
    best, running = None, []
    for v in values:
        best = v if best is None or (v > best if maximize else v < best) else best
        running.append(best)
    if len(running) > width:
        running = [running[int(i * len(running) / width)] for i in range(width - 1)] + [running[-1]]
    lo, hi = min(running), max(running)
    blocks = "▁▂▃▄▅▆▇█"
    if hi == lo:
        return blocks[-1] * len(running)
    scale = (lambda v: (v - lo) / (hi - lo)) if maximize else (lambda v: (hi - v) / (hi - lo))
    return "".join(blocks[min(7, int(scale(v) * 7.999))] for v in running)
