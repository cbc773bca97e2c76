"""Evaluation: scoring, zero-shot retrieval, the fine-grained benchmark, the report."""
