"""Evaluation of MAMO models, the one package for it.

- ``scoring``: model features and ITM scores (``ModelScorer``) and zero-shot retrieval
  (``score_retrieval``), used by the pre-training evaluation and the downstream retrieval task;
- ``retrieval``: R@k metrics (pessimistic ties) and ITC->ITM re-ranking;
- ``finegrained``: the one-change caption benchmark on synthetic scenes;
- ``report``: the HTML report and the headline figures;
- ``data``: the evaluation set read from a dataset version;
- ``runner``: ``evaluate(...)``, a saved model -> ``results.json`` + report;
- ``tasks``: ``evaluate_task(...)``, a downstream task on its eval split.

The CLI is ``python -m mamo.evaluate``; models are loaded by ``mamo.loader``.
"""
