"""concepts stage: word concepts from captions (spaCy), a versioned concept vocabulary,
per-shard annotations, and the caption -> token-label encoding the loader uses.

Modules: ``tokenizer`` (load_tokenizer), ``encode`` (encode_batch), ``store`` (ConceptStore),
``extract`` (ConceptExtractor), ``vocab``, ``annotate``, ``build`` (build_concepts and the
steps the Prefect flow runs), ``train_tokenizer``, ``config`` (ConceptsConfig), ``cli``.
Nothing heavy is imported here, so ``import concepts.store`` stays cheap.
"""
