"""Seeded mutations of every shipped config driven through `validate` and `search --dry-run`:
deletions, type swaps, huge numbers, YAML 1.1 leftovers, control characters, deep nesting,
truncation. Whatever the input: a documented exit code, one short message, no traceback, nothing
written. TUNEKIT_FUZZ_CASES raises the count (make bench runs more), TUNEKIT_FUZZ_SEED draws other cases."""

import copy
import os
import random
from pathlib import Path

import pytest
import yaml

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
CASES = int(os.environ.get("TUNEKIT_FUZZ_CASES", "200"))
DOCUMENTED = {0, 2, 3, 4, 5}
ODD_VALUES = [
    None,
    "",
    "abc",
    -1,
    0,
    1,
    1e308,
    -1e308,
    10**30,
    [],
    {},
    True,
    [1, [2, [3]]],
    {"name": "nope"},
    "1:30",
    "017",
    "0x1F",
    "nan",
    ".inf",
    "\x1b[31mred",
    "é" * 300,
    "model.hidden.0",
]


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


def _parent(doc, path):
    node = doc
    for part in path[:-1]:
        node = node[part]
    return node


def mutate_document(doc, rng: random.Random):
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(doc))
        if not paths:
            break
        path = rng.choice(paths)
        parent, last = _parent(doc, path), path[-1]
        kind = rng.choice(["delete", "swap", "swap", "unknown", "nest"])
        if kind == "delete":
            del parent[last]
        elif kind == "swap":
            parent[last] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif kind == "unknown" and isinstance(parent, dict):
            parent[f"{last}_typo"] = 1
        elif kind == "nest":
            nested = 1
            for _ in range(rng.choice([5, 40])):
                nested = [nested]
            parent[last] = nested
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def mutate_text(text: str, rng: random.Random) -> str:
    kind = rng.choice(["control", "truncate", "deep", "tab", "duplicate"])
    at = rng.randrange(len(text) + 1)
    if kind == "control":
        return text[:at] + rng.choice(["\x00", "\x1b", "\x07", "\ufeff", "\r"]) + text[at:]
    if kind == "truncate":
        return text[:at]
    if kind == "deep":
        return text + "\nextra: " + "[" * rng.choice([100, 5000]) + "\n"
    if kind == "tab":
        return text[:at] + "\t" + text[at:]
    lines = text.splitlines(keepends=True)
    return text + (rng.choice(lines) if lines else "")


def cases():
    rng = random.Random(int(os.environ.get("TUNEKIT_FUZZ_SEED", "0")))
    docs = [(p.name, p.read_text(), yaml.safe_load(p.read_text())) for p in CONFIGS]
    for i in range(CASES):
        name, text, doc = docs[i % len(docs)]
        mutated = mutate_text(text, rng) if rng.random() < 0.3 else mutate_document(doc, rng)
        yield pytest.param(mutated, id=f"{name}-{i}")


def check(result, runs: Path):
    assert result.exit_code in DOCUMENTED, result.stderr[-2000:]
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(result.stderr) < 10_000 and len(result.stdout) < 200_000
    assert not runs.exists(), "nothing may be written by validate or --dry-run"


@pytest.mark.parametrize("text", list(cases()))
def test_validate_survives_mutations(cli, tmp_path, text):
    runs = tmp_path / "runs"
    check(cli("validate", "-", input=text), runs)


@pytest.mark.parametrize("text", list(cases())[: max(1, CASES // 10)])
def test_dry_run_survives_mutations(cli, tmp_path, text):
    runs = tmp_path / "runs"
    check(cli("search", "-", "--dry-run", "--runs", str(runs), input=text), runs)
