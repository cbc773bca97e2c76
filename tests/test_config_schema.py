"""The JSON Schemas in configs/schema stay true to the config classes, and every YAML in
configs/ names its schema (for editors) and passes it."""
import json
import os
from pathlib import Path

import pytest

from mamo.core.config import TOP_LEVEL, read_yaml, schema_for, write_schemas

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO / "configs" / "schema"
YAMLS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml"))


def test_committed_schemas_match_the_classes(tmp_path):
    written = write_schemas(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in SCHEMA_DIR.glob("*.json"))
    for p in written:
        assert p.read_text() == (SCHEMA_DIR / p.name).read_text(), \
            f"{p.name} is stale: run `python -m mamo.core.config schema --out configs/schema`"


@pytest.mark.parametrize("path", YAMLS)
def test_each_yaml_names_and_passes_its_schema(path):
    jsonschema = pytest.importorskip("jsonschema")
    name = schema_for(path)
    assert name in TOP_LEVEL, f"{path}: no top-level config claims it (mamo.core.config.TOP_LEVEL)"
    schema_file = SCHEMA_DIR / f"{name}.schema.json"
    rel = os.path.relpath(schema_file, (REPO / path).parent)
    first = (REPO / path).read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# yaml-language-server: $schema={rel}"
    validator = jsonschema.Draft202012Validator(json.loads(schema_file.read_text()))
    data = read_yaml(REPO / path)
    assert [e.message for e in validator.iter_errors(data)] == []
    # the schema knows the keys: a misspelt one is refused, as load_config would
    assert list(validator.iter_errors({**data, "no_such_key": 1}))
