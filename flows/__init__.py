"""Prefect flows. They orchestrate library functions of ingest/ and concepts/ and hold no
logic of their own."""
