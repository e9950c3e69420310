import pytest

from tunekit.config.yaml_io import MAX_BYTES, dump_yaml, parse_scalar, parse_yaml, read_yaml_file
from tunekit.errors import ConfigError, DataError, UsageError


def error_text(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "c.yaml")
    return "\n".join(info.value.lines())


def test_floats_follow_yaml_1_2():
    data = parse_yaml("a: 1e-4\nb: 3E5\nc: -2.5e-3\nd: 1.0\ne: 7\nf: .inf\n").data
    assert data == {"a": 1e-4, "b": 3e5, "c": -2.5e-3, "d": 1.0, "e": 7, "f": float("inf")}
    assert isinstance(data["a"], float) and isinstance(data["e"], int)


def test_yaml_1_1_booleans_stay_strings():
    data = parse_yaml("a: on\nb: no\nc: yes\nd: true\ne: False\n").data
    assert data == {"a": "on", "b": "no", "c": "yes", "d": True, "e": False}


def test_duplicate_key_names_both_lines_and_the_last_value_is_read_on():
    doc = parse_yaml("optimizer:\n  lr: 1\n  lr: 2\n", "c.yaml")
    assert [p.render("c.yaml") for p in doc.problems] == [
        "c.yaml:3: optimizer.lr: duplicate key (first defined on line 2) (hint: keep one of them)"
    ]
    assert doc.data == {"optimizer": {"lr": 2}} and doc.lines["optimizer.lr"] == 3


def test_line_map_points_at_nested_keys():
    doc = parse_yaml("data:\n  name: digits\nmodel:\n  hidden: [1, 2]\n")
    assert doc.lines["data.name"] == 2 and doc.lines["model.hidden"] == 4
    assert doc.line_of("model.hidden.1.whatever") == 4


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "config is empty"),
        ("# only a comment\n", "config is empty"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("a:\n\tb: 1\n", "indent with spaces, not tabs"),
        ("a: [1, 2\n", "c.yaml:2: invalid YAML"),
        ("a: !!python/object/apply:os.system ['echo hi']\n", "tag not allowed"),
        ("a: !!python/name:os.system\n", "tag not allowed"),
    ],
)
def test_malformed_documents(text, fragment):
    assert fragment in error_text(text)


def test_alias_bomb_is_refused():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefgh"):
        prev = "abcdefgh"[i]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    assert "expands to more than" in error_text("\n".join(lines) + "\n")


def test_huge_file_is_refused(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("a: " + "x" * (MAX_BYTES + 10) + "\n")
    with pytest.raises(ConfigError, match="larger than"):
        read_yaml_file(str(path))


def test_non_utf8_file_names_its_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: ok\nnote: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        read_yaml_file(str(path))
    assert info.value.lines() == [f"{path}:2: file is not valid UTF-8 (hint: save the file as UTF-8)"]


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="config file not found"):
        read_yaml_file(str(tmp_path / "nope.yaml"))


def test_stdin_that_is_a_terminal_is_refused(monkeypatch):
    import sys

    class Tty:
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", Tty())
    with pytest.raises(UsageError, match="stdin is a terminal"):
        read_yaml_file("-")


def test_scalar_overrides_use_the_same_rules():
    assert parse_scalar("3e-4") == 3e-4
    assert parse_scalar("[1, 2]") == [1, 2]
    assert parse_scalar("on") == "on"


def test_dump_round_trips_floats():
    data = {"lr": 1e-5, "hidden": [256, 128], "name": "x"}
    assert parse_yaml(dump_yaml(data)).data == data
