"""Config sections on pydantic (@section): declarative constraints, cross-field checks in
__post_init__, and pydantic's errors turned into ConfigErrors that name the dotted key."""
import dataclasses
from dataclasses import field
from typing import Annotated, Literal

import pytest
from pydantic import Field, ValidationError

from mamo.core.config import ConfigError, check, load_config, section, to_dict


@section
class Leaf:
    ratio: Annotated[float, Field(ge=0, lt=1)] = 0.5
    pair: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = (1, 2)
    name: Annotated[str, Field(min_length=1)] = "a"
    kind: Literal["x", "y"] = "x"

    def __post_init__(self) -> None:
        check(self.pair[0] <= self.pair[1], "pair", f"needs min <= max, got {self.pair}")


@section
class Tree:
    leaves: list[Leaf] = field(default_factory=lambda: [Leaf()])
    leaf: Leaf = field(default_factory=Leaf)
    steps: Annotated[int, Field(ge=0)] = 1
    flag: bool = False


@pytest.mark.parametrize("override, key, message", [
    ("leaf.ratio=1.0", "leaf.ratio", "must be in [0, 1), got 1.0"),
    ("leaf.pair=[0, 2]", "leaf.pair[0]", "must be >= 1, got 0"),
    ("leaf.pair=[1, 2, 3]", "leaf.pair", "must have 2 items, got 3"),
    ("leaf.pair=[1]", "leaf.pair", "must have 2 items, got 1"),
    ("leaf.pair=[3, 2]", "leaf.pair", "needs min <= max, got (3, 2)"),
    ("leaves=[{}, {pair: [3, 2]}]", "leaves[1].pair", "needs min <= max, got (3, 2)"),
    ("leaf.name=''", "leaf.name", "must not be empty"),
    ("leaf.kind=z", "leaf.kind", "must be one of ['x', 'y'], got 'z'"),
    ("leaf.colour=red", "leaf.colour", "unknown key (known keys here: kind, name, pair, ratio)"),
    ("steps='5'", "steps", "must be an integer, got '5'"),
    ("steps=1.5", "steps", "must be an integer, got 1.5"),
    ("flag=1", "flag", "must be true or false, got 1"),
    ("leaf=3", "leaf", "must be a mapping (a section), got 3"),
])
def test_errors_name_the_dotted_key(override, key, message):
    with pytest.raises(ConfigError) as err:
        load_config(Tree, overrides=[override])
    assert (err.value.key, err.value.message) == (key, message)
    assert str(err.value) == f"config key '{key}': {message}"


def test_yaml_numbers_lists_and_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("leaf:\n  ratio: 3e-1\n  pair: [2, 4]\nsteps: 7\n")
    cfg = load_config(Tree, path, ["leaves=[{kind: y}]"])
    assert cfg.leaf == Leaf(ratio=0.3, pair=(2, 4)) and cfg.steps == 7
    assert cfg.leaves == [Leaf(kind="y")]
    assert to_dict(cfg)["leaf"] == {"ratio": 0.3, "pair": [2, 4], "name": "a", "kind": "x"}


def test_prefix_names_the_section_it_is_built_for():
    from mamo.core.config import from_dict

    with pytest.raises(ConfigError) as err:
        from_dict(Leaf, {"pair": [2, 1]}, prefix="model.leaf")
    assert err.value.key == "model.leaf.pair"


def test_python_construction_and_replace_are_checked_too():
    with pytest.raises(ValidationError):
        Leaf(ratio=2.0)
    with pytest.raises(ValidationError):
        dataclasses.replace(Leaf(), pair=(3, 1))
    assert dataclasses.replace(Leaf(), ratio=0.25).ratio == 0.25
