"""`tunekit init` writes configs that validate; `tunekit schema` describes exactly what validates."""

import json

import jsonschema
import pytest

from tunekit.cli import _templates
from tunekit.config.load import load_config

TEMPLATES = sorted(_templates())


def test_the_issue_templates_exist():
    assert {"quickstart", "cnn", "schedules", "init", "finetune"} <= set(TEMPLATES)


@pytest.mark.parametrize("template", TEMPLATES)
def test_init_writes_a_valid_config_with_a_modeline(cli, tmp_path, template):
    out = tmp_path / f"{template}.yaml"
    result = cli("init", template, "-o", out)
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    assert text.startswith("# yaml-language-server: $schema=tunekit.schema.json\n")
    assert (
        load_config(str(out)).name == template
    )  # validates (data and checkpoints are checked by test_shipped_configs)
    assert (tmp_path / "tunekit.schema.json").is_file()


def test_init_refuses_to_overwrite_and_knows_its_templates(cli, tmp_path):
    out = tmp_path / "c.yaml"
    out.write_text("keep me")
    assert cli("init", "quickstart", "-o", out).exit_code == 2 and out.read_text() == "keep me"
    result = cli("init", "quikstart")
    assert result.exit_code == 2 and "did you mean 'quickstart'?" in result.stderr
    assert cli("init").stdout.startswith("# yaml-language-server")  # stdout by default


@pytest.fixture(scope="module")
def schema():
    from typer.testing import CliRunner

    from tunekit.cli import app

    return json.loads(CliRunner().invoke(app, ["schema"]).stdout)


@pytest.mark.parametrize("template", TEMPLATES)
def test_schema_accepts_every_template(schema, template):
    from tunekit.config.yaml_io import parse_yaml

    # YAML 1.2, as editors read it (PyYAML's safe_load would make `1e-3` a string).
    jsonschema.validate(parse_yaml(_templates()[template]).data, schema)


@pytest.mark.parametrize(
    "bad",
    [
        {"data": {"name": "digts"}},
        {"data": {"name": "digits"}, "optimizer": {"name": "adam", "momentum": 0.9}},
        {"data": {"name": "digits"}, "train": {"epochs": True}},
        {"data": {"name": "digits"}, "trian": {}},
        {"data": {"name": "digits"}, "search": {"optimizer.lr": {"lo": 1}}},
        {"model": {"name": "mlp"}},
    ],
)
def test_schema_rejects_what_validation_rejects(schema, bad):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_init_names_the_study_after_the_output_file(cli, tmp_path):
    out = tmp_path / "my house prices.yaml"
    assert cli("init", "regression", "-o", out).exit_code == 0
    assert load_config(str(out)).name == "my-house-prices"
    assert "name: regression" not in out.read_text()


def test_init_from_csv_writes_a_config_for_the_users_table(cli, tmp_path):
    table = tmp_path / "data" / "pets.csv"
    table.parent.mkdir()
    rows = ["weight,age,kind"] + [f"{3 + i % 7},{i % 12},{['cat', 'dog', 'bird'][i % 3]}" for i in range(90)]
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "configs" / "my pets.yaml"
    out.parent.mkdir()
    result = cli("init", "--from-csv", table, "--target", "kind", "-o", out)
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    assert "the target 'kind' holds 3 classes" in text and "#   weight, age" in text
    assert 'path: "../data/pets.csv"' in text  # relative to the config, which is where it is read from
    # Its run line names the file written (quoted for a shell), so it can be pasted as it is.
    assert f"# Run:  tunekit validate '{out}' && tunekit search '{out}' && tunekit train --best" in text
    config = load_config(str(out))
    assert config.name == "my-pets" and config.data.args["path"] == str(table)
    missing = cli("init", "--from-csv", table, "--target", "knd")
    assert missing.exit_code == 4 and "did you mean 'kind'?" in missing.stderr
    assert cli("init", "--target", "kind").exit_code == 2


def test_init_from_csv_names_the_table_when_its_task_is_unclear(cli, tmp_path):
    table = tmp_path / "codes.csv"
    table.write_text("code,x\n" + "".join(f"{i % 50},{i / 7:.3f}\n" for i in range(1000)))
    result = cli("init", "--from-csv", table, "--target", "code", "-o", tmp_path / "codes.yaml")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"error: {table}: data.task: cannot tell"), result.stderr
    assert not (tmp_path / "codes.yaml").exists()
