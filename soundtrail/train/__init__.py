"""Training: one loop for the codec and every generator family, the family registry, and what each model saw.

Pure: :mod:`.loop` (the loop: checkpoints, exact resume, ranks; the :class:`~.loop.TrainUnit`,
:class:`~.loop.CheckpointStore` and :class:`~.loop.Launcher` contracts), :mod:`.unit` (the unit of a model with one
loss: AdamW, warm-up + cosine, accumulation, EMA, DDP), :mod:`.codec` (the codec's unit, its discriminator, its
presets), :mod:`.generator` (the generator family contract), :mod:`.ar` and :mod:`.diffusion` (the two families
trained from scratch, and their presets), :mod:`.musicgen` (fine-tuning a pretrained MusicGen),
:mod:`.pretrained` (what a pretrained model's folder says of itself). Ray Train, which runs a launcher's ranks,
stays in :mod:`soundtrail.flows.distributed`.
Registry: :mod:`.families` (name -> family; generation from a recorded model).
Stage code: :mod:`.stage` (training data from the workspace's current shards, checkpoint folders, the ledger's
codec and model records), :mod:`.start` (where a run's weights begin: the previous model or afresh; base models
admitted under the licence policy).
"""
