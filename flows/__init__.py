"""The orchestration. Prefect flows (``ingest_flow``, ``concepts_flow``; ``python -m flows``)
and the whole-pipeline runs (``flows.demo``, ``flows.ablation``, sharing the stage cache of
``flows.stages``) call the library functions and CLIs of ingest/, concepts/ and mamo/ and hold
no logic of their own."""
