"""The foundation every stage may import, and which imports no stage (and no torch).

One room each:

- ``mamo.core.config``: typed configuration on pydantic (YAML + dotted overrides, errors naming
  the key, a JSON Schema per top-level config)
- ``mamo.core.files``: atomic writes (one temp-naming scheme for the whole project)
- ``mamo.core.logs``: logging set-up, once per process, rank-aware
- ``mamo.core.cli``: the CLI runner (options and overrides in any order; one-line errors, exit 2)
- ``mamo.core.env``: the quiet, offline environment for services (Prefect, Dask, img2dataset)
- ``mamo.core.lock``: one writer per output (a lock file naming its holder; stale ones taken over)

The layer contracts in ``pyproject.toml`` (``lint-imports``) keep it free of the stages.
"""
