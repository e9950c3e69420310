"""The search space: the `search:` block of a config, as Optuna suggestions in define-by-run order.

Each entry is keyed by a dotted path into the config. Entries are checked by substituting their
extreme values (low/high, every choice) into the base config and validating the result, so a
search that would produce an invalid trial config is rejected before the first trial runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from tunekit.config.paths import apply_params, get_path
from tunekit.config.sections import SECTIONS, Config, check_sections, is_finite_number
from tunekit.errors import ConfigError, Problem
from tunekit.registry import did_you_mean

ENTRY_KEYS = ["low", "high", "log", "step", "choices", "type", "when"]
_MISSING = object()
MAX_POINTS = 1_000_000  # a grid's points are listed in memory; past this, use a sampler that draws


def _label(value: Any) -> Any:
    """Optuna categoricals hold only scalars: lists (hidden layer sizes) travel as their JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


@dataclass
class Param:
    key: str
    kind: Literal["float", "int", "categorical"]
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list[Any] = field(default_factory=list)
    when: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def labels(self) -> list[Any]:
        return [_label(c) for c in self.choices]

    def suggest(self, trial) -> Any:
        if self.kind == "categorical":
            label = trial.suggest_categorical(self.key, self.labels)
            return self.choices[self.labels.index(label)]
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def value_of(self, optuna_value: Any) -> Any:
        """A stored Optuna param value back to the config value."""
        if self.kind == "categorical" and optuna_value in self.labels:
            return self.choices[self.labels.index(optuna_value)]
        return optuna_value

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return _label(value) in self.labels
        if not is_finite_number(value) or not self.low <= value <= self.high:
            return False
        return self.kind == "float" or isinstance(value, int)

    def representatives(self) -> list[Any]:
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    # The points of a finite entry: its choices, or its range walked by `step`. The space's size,
    # the grid and the check that a trial repeats none of them all read these methods.

    def size(self) -> int | None:
        """How many points the entry has; None for a continuous range."""
        if self.kind == "categorical":
            return len(self.choices)
        if self.kind == "int":
            return (self.high - self.low) // (self.step or 1) + 1
        if self.step:
            return int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return None

    def point(self, i: int) -> Any:
        """The i-th point, as Optuna stores it (a choice's label, a number on the step)."""
        if self.kind == "categorical":
            return self.labels[i]
        if self.kind == "int":
            return self.low + i * (self.step or 1)
        return float(f"{self.low + i * self.step:.12g}")  # 0.1 + 2 * 0.1 is 0.30000000000000004

    def points(self) -> list[Any]:
        """Every point of a finite entry, in order."""
        n = self.size()
        if n is None:
            raise ValueError(f"search.{self.key} is a continuous range: it has no list of points")
        return [self.point(i) for i in range(n)]

    def describe(self) -> str:
        if self.kind == "categorical":
            text = "{" + ", ".join(json.dumps(c) for c in self.choices) + "}"
        else:
            text = (
                f"[{self.low}, {self.high}]"
                + (" log" if self.log else "")
                + (f" step {self.step}" if self.step else "")
            )
        if self.when:
            text += "  when " + ", ".join(f"{k} in {v}" for k, v in self.when.items())
        return text

    def fingerprint(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "step": self.step,
            "choices": self.labels,
            "when": {k: [_label(x) for x in v] for k, v in sorted(self.when.items())},
        }


# Keys a study cannot vary between its trials, with why and what to do instead.
# `seed` is among them: it fixes the data split, so trials with other seeds would be scored on
# other validation rows and their values would not compare. Each trial already trains with its
# own seed (from `seed` and the trial number); `train --best --seeds K` measures the spread.
UNSEARCHABLE = {
    "name": ("the study's name cannot vary between its trials", "name a study with --study NAME"),
    "seed": (
        "the seed cannot be searched: it fixes the data split, so trials with other seeds would be scored "
        "on other validation rows",
        "each trial already trains with its own seed; measure seed-to-seed spread with "
        "`tunekit train --best --seeds 5`",
    ),
    "study": (
        "the study's own settings (metric, trials, sampler, pruner) cannot vary between its trials",
        "set them under study:, or run a second study with --study NEW_NAME",
    ),
    "search": ("the search block cannot search itself", "search keys of the other sections"),
    "train.device": (
        "where a trial runs is not what it is: train.device cannot be searched",
        "set train.device, or pass --devices to search",
    ),
    "train.threads": (
        "how many threads a trial uses is not what it is: train.threads cannot be searched",
        "set train.threads; --workers divides the cores among workers",
    ),
}


def unsearchable(key: str) -> tuple[str, str] | None:
    for fixed, why in UNSEARCHABLE.items():
        if key == fixed or key.startswith(fixed + "."):
            return why
    return None


LIST_HINT = "search the whole list as choices instead, e.g. model.hidden: {choices: [[64], [128, 64]]}"


def _parse_entry(key: str, spec: Any) -> tuple[Param | None, list[Problem]]:
    where = f"search.{key}"
    fixed = unsearchable(key)
    if fixed:
        return None, [Problem(where, fixed[0], hint=fixed[1])]
    if any(not part for part in key.split(".")):
        return None, [
            Problem(where, "is not a dotted key: every part between dots needs a name", hint="e.g. optimizer.lr")
        ]
    if any(part.isdigit() for part in key.split(".")):
        return None, [Problem(where, "a search key cannot index into a list", hint=LIST_HINT)]
    if not isinstance(spec, dict):
        return None, [
            Problem(
                where, "must be {low: .., high: ..} or {choices: [...]}", hint="e.g. {low: 1e-4, high: 1e-1, log: true}"
            )
        ]
    problems = []
    for k in spec:
        if k not in ENTRY_KEYS:
            problems.append(
                Problem(
                    f"{where}.{k}",
                    "unknown key in a search entry",
                    hint=did_you_mean(str(k), ENTRY_KEYS) or f"keys: {', '.join(ENTRY_KEYS)}",
                )
            )
    when = spec.get("when") or {}
    if not isinstance(when, dict):
        problems.append(
            Problem(
                f"{where}.when",
                "must map search keys to their allowed values",
                hint="e.g. when: {optimizer.name: [sgd]}",
            )
        )
        when = {}
    when = {str(k): (v if isinstance(v, list) else [v]) for k, v in when.items()}
    for k in [k for k, v in when.items() if not v]:
        problems.append(
            Problem(f"{where}.when.{k}", "lists no value: the entry could never be active", hint=f"e.g. {k}: [VALUE]")
        )
        del when[k]
    explicit = spec.get("type")
    if explicit is not None and explicit not in ("float", "int", "categorical"):
        problems.append(
            Problem(
                f"{where}.type",
                f"'{explicit}' is not one of: float, int, categorical",
                hint=did_you_mean(str(explicit), ["float", "int", "categorical"]),
            )
        )
        return None, problems

    if "choices" in spec:
        if any(k in spec for k in ("low", "high", "log", "step")):
            problems.append(Problem(where, "give either choices or low/high, not both"))
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            return None, problems + [Problem(f"{where}.choices", "must be a non-empty list")]
        labels = [_label(c) for c in choices]
        dupes = sorted({json.dumps(lab) for lab in labels if labels.count(lab) > 1})
        if dupes:
            problems.append(Problem(f"{where}.choices", f"duplicate choices: {', '.join(dupes)}"))
        if explicit not in (None, "categorical"):
            problems.append(Problem(f"{where}.type", f"type {explicit} needs low/high, not choices"))
        return (None if problems else Param(key, "categorical", choices=choices, when=when)), problems

    if "low" not in spec or "high" not in spec:
        return None, problems + [
            Problem(where, "needs both low and high, or choices", hint="e.g. {low: 16, high: 256}")
        ]
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    for name, v in (("low", low), ("high", high)):
        if not is_finite_number(v):
            problems.append(Problem(f"{where}.{name}", f"must be a finite number, got {v!r}"))
    if not isinstance(log, bool):
        problems.append(Problem(f"{where}.log", f"must be true or false, got {log!r}"))
    if step is not None and (not is_finite_number(step) or step <= 0):
        problems.append(Problem(f"{where}.step", f"must be a positive number, got {step!r}"))
    if problems:
        return None, problems
    if low > high:
        problems.append(Problem(where, f"`low <= high` must hold, but got (low={low}, high={high})"))
    if log and low <= 0:
        problems.append(
            Problem(
                f"{where}.low", f"a log range needs low > 0, got {low}", hint="use a small positive low such as 1e-6"
            )
        )
    if log and step is not None:
        problems.append(Problem(where, "step and log cannot be combined", hint="drop one of them"))
    ints = all(isinstance(v, int) for v in (low, high) if v is not None) and (step is None or isinstance(step, int))
    kind = explicit or ("int" if ints else "float")
    if kind == "int" and not ints:
        problems.append(Problem(f"{where}.type", "type int needs integer low, high and step"))
    if kind == "categorical":
        problems.append(Problem(f"{where}.type", "type categorical needs choices"))
    if kind == "float":
        low, high = float(low), float(high)
    if problems:
        return None, problems
    return Param(key, kind, low, high, log, step, when=when), []


class SearchSpace:
    """The parsed `search:` block, ordered so that every `when:` condition is sampled before it is read."""

    def __init__(self, params: list[Param]):
        self.params = params

    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self):
        return iter(self.params)

    def get(self, key: str) -> Param | None:
        return next((p for p in self.params if p.key == key), None)

    @classmethod
    def parse(cls, config: Config, skip_sections: frozenset[str] = frozenset()) -> tuple[SearchSpace, list[Problem]]:
        """Every problem of the `search:` block: each entry's own shape, and the corners of every
        entry that has a sound shape (and sound conditions) against the config. `skip_sections`:
        sections that already have problems of their own, whose entries' corners would only repeat them."""
        params, problems = cls.parse_entries(config.search)
        usable = _usable(params, problems)
        try:
            ordered = _define_by_run_order(usable)
        except ConfigError as exc:  # a cycle of conditions: reported beside everything else
            problems += exc.problems
            ordered = [p for p in usable if not p.when]  # conditional corners would read the cycle
        space = cls(ordered)
        problems += space._check_against_config(config, skip_sections, searched=set(map(str, config.search)))
        return space, problems

    @staticmethod
    def parse_entries(search: dict) -> tuple[list[Param], list[Problem]]:
        """Check each entry's own shape (no config needed): ranges, choices, conditions."""
        params, problems = [], []
        for key, spec in search.items():
            param, found = _parse_entry(str(key), spec)
            problems += found
            if param:
                params.append(param)
        by_key = {p.key: p for p in params}
        problems += _check_conditions(params, by_key, {str(k) for k in search})
        return params, problems

    def _check_against_config(
        self, config: Config, skip_sections: frozenset[str] = frozenset(), searched: set[str] | None = None
    ) -> list[Problem]:
        """Substitute each entry's extreme values into the base config and validate the result.

        An entry in a section whose component is itself searched (optimizer.momentum beside
        optimizer.name) is tried under every choice its `when:` allows: if only some accept it,
        the fix is a `when:`, and the hint says which.
        """
        problems = []
        for p in self.params:
            section = p.key.split(".")[0]
            if section in skip_sections:
                continue
            inside = _inside_a_value(config.raw, p.key)
            if inside:
                problems.append(inside)
                continue
            spec = SECTIONS.get(section)
            switch_key = f"{section}.{spec.name_key}" if spec else None
            switch = self.get(switch_key) if spec else None
            if switch is None and switch_key in (searched or ()) and switch_key != p.key:
                continue  # the component is searched by an entry with problems of its own: nothing to check under
            if switch is None or switch.key == p.key:
                branches = [{}]
            else:
                allowed = p.when.get(switch.key, switch.choices)
                branches = [
                    {switch.key: c}
                    for c in switch.choices
                    if _label(c) in [_label(a) for a in allowed] and c not in self._failing(config, switch)
                ]
                if not branches:
                    continue  # every component it could sit under is itself refused (reported there)
            context = {k: v[0] for k, v in p.when.items()}
            failures = {}
            for branch in branches:
                for value in p.representatives():
                    found = check_sections(apply_params(config.raw, {**context, **branch, p.key: value}))[1]
                    if found:
                        failures[json.dumps(branch)] = (value, found[0])
                        break
            if not failures:
                continue
            if len(failures) < len(branches):
                rejecting = [b[switch.key] for b in branches if json.dumps(b) in failures]
                accepting = [b[switch.key] for b in branches if json.dumps(b) not in failures]
                problems.append(
                    Problem(
                        f"search.{p.key}",
                        f"not accepted when {switch.key} is {', '.join(map(str, rejecting))}",
                        hint=f"add when: {{{switch.key}: [{', '.join(map(str, accepting))}]}}",
                    )
                )
                continue
            value, first = next(iter(failures.values()))
            detail = first.message if first.path == p.key else f"{first.path}: {first.message}"
            problems.append(
                Problem(
                    f"search.{p.key}", f"value {json.dumps(value)} gives an invalid config: {detail}", hint=first.hint
                )
            )
        return problems

    def _failing(self, config: Config, p: Param) -> list[Any]:
        """The values of `p` that alone give an invalid config (an unknown component name, say)."""
        cache = self.__dict__.setdefault("_failing_cache", {})
        if p.key not in cache:
            cache[p.key] = [v for v in p.representatives() if check_sections(apply_params(config.raw, {p.key: v}))[1]]
        return cache[p.key]

    def sample(self, trial) -> dict[str, Any]:
        """Suggest every active entry; an entry whose condition fails is never sampled."""
        values: dict[str, Any] = {}
        for p in self.params:
            if all(k in values and _label(values[k]) in [_label(x) for x in allowed] for k, allowed in p.when.items()):
                values[p.key] = p.suggest(trial)
        return values

    def baseline(self, raw: dict) -> dict[str, Any]:
        """Optuna params that reproduce the config's base values (trial 0), where the space contains them."""
        values, labels = {}, {}
        for p in self.params:
            if not all(
                k in values and _label(values[k]) in [_label(x) for x in allowed] for k, allowed in p.when.items()
            ):
                continue
            base = get_path(raw, p.key, _MISSING)
            if base is not _MISSING and p.contains(base):  # a `null` base is a value, if null is a choice
                values[p.key] = base
                labels[p.key] = _label(base)
        return labels

    def holds(self, optuna_params: dict[str, Any]) -> bool:
        """Could a trial of this space take these Optuna params (another study's, say)?"""
        for key, value in optuna_params.items():
            p = self.get(key)
            if p is None:
                return False
            if p.kind == "categorical":
                if value not in p.labels:
                    return False
            elif not p.contains(value):
                return False
        return True

    def values_from(self, optuna_params: dict[str, Any]) -> dict[str, Any]:
        return {k: self.get(k).value_of(v) if self.get(k) else v for k, v in optuna_params.items()}

    def fingerprint(self) -> dict[str, dict]:
        return {p.key: p.fingerprint() for p in sorted(self.params, key=lambda q: q.key)}

    @classmethod
    def from_fingerprint(cls, fingerprint: dict[str, dict]) -> SearchSpace:
        """The space a study recorded, for counting its points (choices stay labels)."""
        params = [
            Param(
                key,
                f["kind"],
                f.get("low"),
                f.get("high"),
                f.get("log", False),
                f.get("step"),
                list(f.get("choices") or []),
                dict(f.get("when") or {}),
            )
            for key, f in fingerprint.items()
        ]
        return cls(_define_by_run_order(params))

    # The distinct configs of a finite space. An entry whose `when:` fails is absent from a point,
    # so inactive entries do not multiply the count (momentum's values under adam are one config).

    def is_active(self, p: Param, chosen: dict[str, Any]) -> bool:
        return all(k in chosen and chosen[k] in [_label(x) for x in allowed] for k, allowed in p.when.items())

    def size(self) -> int | None:
        """How many distinct configs the space holds; None when an entry is a continuous range."""
        if any(p.size() is None for p in self.params):
            return None
        parents = {k for p in self.params for k in p.when}

        def count(i: int, chosen: dict[str, Any]) -> int:
            if i == len(self.params):
                return 1
            p = self.params[i]
            if not self.is_active(p, chosen):
                return count(i + 1, chosen)
            if p.key in parents:  # branch only where a condition reads the value
                return sum(count(i + 1, {**chosen, p.key: v}) for v in p.points())
            return p.size() * count(i + 1, chosen)

        return count(0, {})

    def points(self, limit: int = MAX_POINTS) -> list[dict[str, Any]]:
        """Every distinct config of a finite space as Optuna params (active entries only), in order."""
        size = self.size()
        if size is None:
            raise ValueError("the search space has a continuous range: it has no list of points")
        if size > limit:
            raise ValueError(f"the search space has {size} points, more than {limit} a grid can walk")
        found: list[dict[str, Any]] = [{}]
        for p in self.params:
            grown = []
            for point in found:
                if self.is_active(p, point):
                    grown += [{**point, p.key: v} for v in p.points()]
                else:
                    grown.append(point)
            found = grown
        return found


def point_key(params: dict[str, Any]) -> str:
    """One text per distinct point, whatever the order of its entries."""
    return json.dumps(params, sort_keys=True)


def _check_conditions(params: list[Param], by_key: dict[str, Param], searched: set[str] = frozenset()) -> list[Problem]:
    """`searched`: every key of the search block, also those whose entry has problems of its own (a
    condition on one of them is not checked: its entry's problem says what to fix)."""
    problems = []
    for p in params:
        for k, allowed in p.when.items():
            where = f"search.{p.key}.when.{k}"
            parent = by_key.get(k)
            if k == p.key:
                problems.append(Problem(where, "an entry cannot be conditional on itself"))
            elif parent is None and k in searched:
                continue
            elif parent is None:
                problems.append(
                    Problem(
                        where,
                        "when: must name another search entry",
                        hint=did_you_mean(k, list(by_key)) or "condition on a key that is searched",
                    )
                )
            elif parent.kind == "float" and not parent.step:
                problems.append(
                    Problem(
                        where,
                        f"a condition on a continuous range never holds: a float drawn from {k} is almost never "
                        "exactly a listed value",
                        hint=f"condition on a categorical entry, or give search.{k} a step",
                    )
                )
            elif parent.kind != "categorical":
                for v in allowed:
                    if not parent.contains(v):
                        problems.append(
                            Problem(where, f"{json.dumps(v)} is outside the range of {k}: {parent.describe()}")
                        )
            elif parent.kind == "categorical":
                for v in allowed:
                    if _label(v) not in parent.labels:
                        problems.append(
                            Problem(
                                where,
                                f"{json.dumps(v)} is not among the choices of {k}",
                                hint=did_you_mean(str(v), [str(c) for c in parent.choices]),
                            )
                        )
    return problems


def _usable(params: list[Param], problems: list[Problem]) -> list[Param]:
    """The entries without problems of their own whose conditions read only such entries."""
    flagged = {
        p.key
        for p in params
        if any(q.path == f"search.{p.key}" or q.path.startswith(f"search.{p.key}.") for q in problems)
    }
    usable = {p.key: p for p in params if p.key not in flagged}
    changed = True
    while changed:
        changed = False
        for key, p in list(usable.items()):
            if any(k not in usable or k == key for k in p.when):
                del usable[key]
                changed = True
    return [p for p in params if p.key in usable]


def _inside_a_value(raw: dict, key: str) -> Problem | None:
    """A search key that walks into a list or a plain value of the base config (`model.hidden.x`)."""
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, list):
            return Problem(
                f"search.{key}",
                f"{'.'.join(parts[: i + 1])} is a list: a search key cannot index into it",
                hint=LIST_HINT,
            )
        if node is not None and not isinstance(node, dict):
            return Problem(
                f"search.{key}",
                f"{'.'.join(parts[: i + 1])} is a value ({json.dumps(node)}), not a mapping: nothing to search inside it",
                hint=f"search {'.'.join(parts[: i + 1])} itself",
            )
    return None


def _define_by_run_order(params: list[Param]) -> list[Param]:
    """YAML order, except that an entry comes after the entries its `when:` reads (cycles are rejected)."""
    by_key = {p.key: p for p in params}
    ordered, state = [], {}

    def visit(p: Param, chain: tuple[str, ...]) -> None:
        if state.get(p.key) == "done":
            return
        if p.key in chain:
            raise ConfigError(
                [Problem(f"search.{p.key}.when", f"conditions form a cycle: {' -> '.join(chain + (p.key,))}")]
            )
        for k in p.when:
            visit(by_key[k], chain + (p.key,))
        state[p.key] = "done"
        ordered.append(p)

    for p in params:
        visit(p, ())
    return ordered
