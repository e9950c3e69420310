"""Every config shipped in configs/ validates and builds on its real data."""

from pathlib import Path

import pytest
import yaml

from tunekit.config.load import load_config
from tunekit.config.space import SearchSpace
from tunekit.train.build import check_buildable

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_configs_for_each_family():
    assert {p.stem for p in CONFIGS} >= {
        "quickstart",
        "optimizers",
        "schedules",
        "init",
        "deep",
        "cnn",
        "regression",
        "finetune",
    }


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """finetune.yaml starts from the quickstart winner: make a (briefly trained) one to point it at."""
    from tunekit.study.retrain import train_config

    root = tmp_path_factory.mktemp("cwd")
    quick = load_config(str(CONFIGS[0].parent / "quickstart.yaml"), ["model.hidden=[512, 256]"])
    train_config(quick, root / "runs" / "quickstart" / "best", seed=0, epochs=1)
    return root


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path, pretrained, monkeypatch):
    if "finetune" in (yaml.safe_load(path.read_text()).get("train") or {}):
        monkeypatch.chdir(pretrained)
    config = check_buildable(load_config(str(path)))
    space, problems = SearchSpace.parse(config)
    assert problems == [] and config.name == path.stem
