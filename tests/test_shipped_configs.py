"""Every config shipped in configs/ validates, builds on its real data, and names its study."""

from pathlib import Path

import pytest

from tunekit.build import check_buildable
from tunekit.config.load import load_config
from tunekit.space import SearchSpace

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path):
    config = check_buildable(load_config(str(path)))
    space, problems = SearchSpace.parse(config)
    assert problems == [] and config.name
