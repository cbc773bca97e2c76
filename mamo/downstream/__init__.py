"""Downstream tasks (ALBEF-style protocols): retrieval, VQA, NLVR2, weakly supervised grounding.

Readers parse the public file formats (Karpathy split JSON, VQA v2, NLVR2 JSON lines,
RefCOCO+ refs/instances exported as JSON); ``synthetic_tasks`` writes the same formats from a
synthetic dataset version's ground-truth scenes, so one code path serves both.
"""
