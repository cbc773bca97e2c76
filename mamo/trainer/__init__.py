"""The training loop of pre-training and fine-tuning, and what it is made of.

- ``trainer``: ``Trainer`` (state on ``self``, ``train_step``, ``train``) over a ``TrainingJob``
- ``pretrain``: pre-training as a job (model, loader, ``final/`` export); ``preflight``: its
  start checks (``prepare``)
- ``optim`` (AdamW groups, schedule), ``checkpoint``, ``metrics``, ``batching`` (streams),
  ``seeding``, ``signals``, ``distributed``, ``parallelize`` (checkpointing, compile, FSDP,
  DDP), ``fsdp``, ``activation_checkpointing``, ``config``

``python -m mamo.train`` and ``python -m mamo.finetune`` are the CLIs over it.
"""
