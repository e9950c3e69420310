"""What a tuner would tell you after looking at a study. Torch-free; reads only the study.

Each rule is deliberately conservative (it stays silent unless the evidence is plain), because
advice that fires on noise teaches users to ignore it. Each names a change the tool then accepts:
a wider range continues the study (tunekit.study.resume), a narrower space is a new study.
Entries that cannot vary (one choice, low == high) get no advice.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import tunekit.reasons as reasons  # the module itself: the package root (and its lazy load()) stays out
from tunekit.config.space import SearchSpace

EDGE = 0.05  # within 5% of a range end (in log space for log ranges)
NEGLIGIBLE = 0.02  # share of the metric's variance below which a parameter may as well be fixed
TRIALS_PER_PARAM = 10  # TPE's own start-up is 10 random trials; a model of d dimensions needs more
# Failures that say something about the trial's config (not an interrupted or lost worker):
# importance counts them as the worst value, and the failure rules read them.
CONFIG_FAILURES = reasons.DIAGNOSTIC | {reasons.OOM}
NEW_STUDY = "search with --study NEW_NAME (a narrower space is a new study; this one does not resume with it)"


def _position(value: float, low: float, high: float, log: bool) -> float:
    if log:
        value, low, high = math.log(value), math.log(low), math.log(high)
    return 0.5 if high == low else (value - low) / (high - low)


def _fmt(x: Any) -> str:
    return f"{x:.3g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else json.dumps(x)


def varies(dist: dict) -> bool:
    """Can the entry take two values? One choice, or low == high, is a constant written as a search."""
    if dist["kind"] == "categorical":
        return len(dist.get("choices") or []) > 1
    low, high, step = dist.get("low"), dist.get("high"), dist.get("step")
    if low is None or high is None:
        return False
    return high - low >= (step or (1 if dist["kind"] == "int" else 0)) and high > low


def numeric_choices(dist: dict) -> bool:
    choices = dist.get("choices") or []
    return dist["kind"] == "categorical" and all(
        isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices
    )


def config_failure(trial: dict) -> bool:
    return trial["state"] == "FAIL" and trial.get("reason") in CONFIG_FAILURES


def edge_of_range(space: dict, trials: list[dict], best: dict | None) -> list[str]:
    if not best:
        return []
    out = []
    for key, dist in space.items():
        if dist["kind"] not in ("float", "int") or key not in best["params"] or not varies(dist):
            continue
        value = best["params"][key]
        step = dist.get("step") or (1 if dist["kind"] == "int" else None)
        if step and math.floor((dist["high"] - dist["low"]) / step + 1e-9) + 1 < 5:
            continue  # a handful of values on a step: every value is an "edge"
        pos = _position(value, dist["low"], dist["high"], dist["log"])
        where = f"the best value {_fmt(value)} sits at the %s of its range [{_fmt(dist['low'])}, {_fmt(dist['high'])}]"
        # No advice past a bound no value can cross: below 0 (dropout, weight decay, warmup), above 1
        # for a fraction in [0, 1] (dropout, label smoothing).
        fraction = dist["kind"] == "float" and not dist["log"] and dist["low"] >= 0 and dist["high"] == 1
        if pos >= 1 - EDGE and not fraction:
            out.append(
                f"{key}: {where % 'top'}; raise `high` (the optimum may lie beyond) and rerun the same search: "
                "a wider range continues this study"
            )
        elif pos <= EDGE and dist["low"] != 0:
            out.append(
                f"{key}: {where % 'bottom'}; lower `low`{' by a multiple of `step`' if dist.get('step') else ''} "
                "(the optimum may lie beyond) and rerun the same search: "
                "a wider range continues this study"
            )
    return out


def negligible(importance: dict[str, float], n_scored: int, space: dict, claimed: set[str]) -> list[str]:
    """`n_scored`: the trials importance was computed on (completed ones and config failures)."""
    if n_scored < 10:
        return []
    return [
        f"{key}: barely matters here (importance {share:.2f}); fix it to one value and {NEW_STUDY}"
        for key, share in importance.items()
        if share < NEGLIGIBLE and key not in claimed and (key not in space or varies(space[key]))
    ]


def _points(key: str, trials: list[dict]) -> list[tuple[Any, bool]]:
    finished = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED", "FAIL")]
    return [
        (t["params"][key], t["state"] == "FAIL" and t.get("reason") in reasons.DIAGNOSTIC)
        for t in finished
        if key in t["params"]
    ]


def divergence_region(space: dict, trials: list[dict]) -> dict[str, str]:
    """A threshold beyond which most trials diverge: `lr >= x diverged in 5 of 6 trials`. Numeric
    ranges and numeric choices (`lr: {choices: [0.001, 0.01, 1.0]}`) alike."""
    out = {}
    for key, dist in space.items():
        if not varies(dist) or not (dist["kind"] in ("float", "int") or numeric_choices(dist)):
            continue
        points = sorted(_points(key, trials), key=lambda p: (p[0], p[1]))
        if len(points) < 6 or sum(d for _, d in points) < 3:
            continue
        best_claim = None
        for side in ("above", "below"):
            for i in range(1, len(points)):
                if points[i][0] == points[i - 1][0]:
                    continue  # a cut between equal values splits nothing (repeated choices)
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
            sign, bound, move = (">=", "high", "lower") if side == "above" else ("<=", "low", "raise")
            past = "below" if side == "above" else "above"
            if dist["kind"] == "categorical":
                fix = f"drop the values {sign} {_fmt(cut)} from `choices`"
            else:
                fix = f"{move} `{bound}` {past} {_fmt(cut)}"
            out[key] = f"{key} {sign} {_fmt(cut)} diverged in {failed} of {n} trials; {fix} and {NEW_STUDY}"
    return out


def failing_choices(space: dict, trials: list[dict], claimed: set[str]) -> dict[str, str]:
    """Choices that nearly always fail for a reason of the config (diverged, vanishing gradients,
    out of memory) while the others run: `model.activation = sigmoid failed in 6 of 6 trials`."""
    out = {}
    for key, dist in space.items():
        if dist["kind"] != "categorical" or not varies(dist) or key in claimed:
            continue
        runs: dict[str, list[dict]] = {}
        for t in trials:
            if key in t["params"] and t["state"] in ("COMPLETE", "PRUNED", "FAIL"):
                runs.setdefault(json.dumps(t["params"][key]), []).append(t)
        failing = {c: ts for c, ts in runs.items() if len(ts) >= 2 and sum(map(config_failure, ts)) / len(ts) >= 0.8}
        rest = [t for c, ts in runs.items() if c not in failing for t in ts]
        region = [t for ts in failing.values() for t in ts]
        if len(region) < 3 or not rest or sum(map(config_failure, rest)) / len(rest) > 0.3:
            continue
        failed = [t for t in region if config_failure(t)]
        why = ", ".join(r for r, _ in Counter(t["reason"] for t in failed).most_common())
        names = list(failing)
        what = f"= {names[0]}" if len(names) == 1 else "in {" + ", ".join(names) + "}"
        out[key] = (
            f"{key} {what} failed in {len(failed)} of {len(region)} trials ({why}) while the other choices ran; "
            f"drop {'it' if len(names) == 1 else 'them'} from `choices` and {NEW_STUDY}"
        )
    return out


def too_few_trials(space: dict, n_informative: int, n_finished: int, size: int | None) -> list[str]:
    varying = [k for k, d in space.items() if varies(d)]
    if not varying:
        return []
    if size is not None and n_finished >= size:
        return []  # every distinct config has been tried: there is nothing to continue with
    needed = TRIALS_PER_PARAM * len(varying)
    if size is not None:
        needed = min(needed, size)
    if n_informative >= needed:
        return []
    return [
        f"{n_informative} completed or pruned trials for {len(varying)} searched parameters: a sampler needs about "
        f"{needed} to map this space; continue with --trials {needed}"
    ]


def advise(summary: dict[str, Any], space: dict) -> list[str]:
    trials, best = summary["trials"], summary.get("best")
    states = summary["states"]
    n_informative = states["COMPLETE"] + states["PRUNED"]  # pruned trials inform the sampler too
    n_finished = n_informative + states["FAIL"]
    size = SearchSpace.from_fingerprint(space).size() if space else None
    diverged = divergence_region(space, trials)
    failing = failing_choices(space, trials, set(diverged))
    n_scored = states["COMPLETE"] + sum(map(config_failure, trials))
    return (
        edge_of_range(space, trials, best)
        + list(diverged.values())
        + list(failing.values())
        + negligible(summary.get("importance", {}), n_scored, space, set(diverged) | set(failing))
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
