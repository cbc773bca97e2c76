"""The shared config machinery: defaults <- YAML <- dotted overrides, errors name the key."""
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from mamo.core.config import ConfigError, check, load_config, to_dict


@dataclass
class Inner:
    ratio: float = 0.4
    kind: Literal["a", "b"] = "a"

    def validate(self, prefix: str) -> None:
        check(0.0 <= self.ratio < 1.0, f"{prefix}.ratio", "must be in [0, 1)")


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    steps: int = 3
    name: Optional[str] = None
    sizes: list[int] = field(default_factory=lambda: [1, 2])


def test_defaults_yaml_and_overrides_compose(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 10\ninner:\n  kind: b\n")
    cfg = load_config(Outer, path, ["inner.ratio=0.25", "sizes=[3, 4]", "name=run1"])
    assert cfg == Outer(inner=Inner(ratio=0.25, kind="b"), steps=10, name="run1", sizes=[3, 4])
    assert to_dict(cfg)["inner"] == {"ratio": 0.25, "kind": "b"}


def test_exponent_without_dot_is_a_float():
    # YAML 1.1 would read 3e-4 as a string
    assert load_config(Outer, overrides=["inner.ratio=3e-4"]).inner.ratio == pytest.approx(3e-4)


@pytest.mark.parametrize(
    "override, key",
    [
        ("inner.foo=1", "inner.foo"),
        ("inner.ratio=1.5", "inner.ratio"),
        ("steps=abc", "steps"),
        ("steps=true", "steps"),
        ("inner.kind=c", "inner.kind"),
        ("sizes=[1, x]", "sizes[1]"),
        ("inner=3", "inner"),
    ],
)
def test_errors_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(Outer, overrides=[override])
    assert err.value.key == key
    assert f"'{key}'" in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "nope.yaml")
