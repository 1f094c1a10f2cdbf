"""Training: one loop for the codec and every generator family, the family registry, and what each model saw.

Pure: :mod:`.loop` (the loop: checkpoints, exact resume; the :class:`~.loop.TrainUnit` contract), :mod:`.unit`
(the unit of a model with one loss: AdamW, warm-up + cosine), :mod:`.codec` (the codec's unit, its discriminator
and batches), :mod:`.generator` (the generator family contract), :mod:`.ar` and :mod:`.diffusion` (the two
families), :mod:`.pretrained` (what a pretrained model's folder says of itself).
Registry: :mod:`.families` (name -> family; generation from a recorded model).
Stage code: :mod:`.stage` (training data from the workspace's current shards, checkpoint folders, the ledger's
codec and model records), :mod:`.start` (where a run's weights begin: the previous model or afresh; base models
admitted under the licence policy).
"""
