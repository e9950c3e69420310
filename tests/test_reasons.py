"""One vocabulary of failure reasons: no module spells a reason itself."""

import re
from pathlib import Path

from tunekit import reasons

PACKAGE = Path(reasons.__file__).parent


def test_the_groups_are_made_of_known_reasons():
    assert reasons.DIAGNOSTIC | reasons.RETRIED | reasons.NOT_THE_CONFIG <= set(reasons.ALL)
    assert len(set(reasons.ALL)) == len(reasons.ALL)


def test_no_module_writes_a_reason_as_a_string_literal():
    # A reason typed out in two places drifts: the report's filter and the advice once disagreed
    # with the trainer about which reasons were divergence.
    names = "|".join(reasons.ALL)
    literal = re.compile(rf"""["']({names})["']""")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "reasons.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if literal.search(code) and ("reason" in code or " in (" in code or "Diverged(" in code):
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not offenders, "use tunekit.reasons instead of:\n" + "\n".join(offenders)
