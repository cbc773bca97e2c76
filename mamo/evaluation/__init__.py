"""Evaluation of MAMO models, the one package for it.

- ``scoring``: model features and ITM scores (``ModelScorer``) and zero-shot retrieval
  (``score_retrieval``), used by the pre-training evaluation and the downstream retrieval task;
- ``retrieval``: R@k metrics (pessimistic ties) and ITC->ITM re-ranking;
- ``finegrained``: the one-change caption benchmark on synthetic scenes (items capped per type);
- ``probe``: linear probes (logistic regression) on frozen pair features;
- ``masked_word``: the text head's true word against its swap at the masked position;
- ``stats``: mean ± std over seeds and the paired (seeds, then items) bootstrap interval;
- ``report``: the HTML report and the headline figures;
- ``ablation``: the ablation's summaries, ``ablation.json`` pieces (differences), tables, plots;
- ``data``: the evaluation set read from a dataset version;
- ``runner``: ``evaluate(...)``, a saved model -> ``results.json`` + report; ``run_finegrained``,
  every fine-grained readout of one model;
- ``tasks``: ``evaluate_task(...)``, a downstream task on its eval split.

The CLI is ``python -m mamo.evaluate``; models are loaded by ``mamo.loader``.
"""
