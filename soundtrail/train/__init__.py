"""Training: one loop for the codec and every generator family, and the records of what each model saw.

Pure: :mod:`.loop` (AdamW, schedule, checkpoints, exact resume), :mod:`.codec` (the codec's objective),
:mod:`.ar` and :mod:`.diffusion` (the two generator families' trainable units), :mod:`.families` (the
family contract and its registry).
Stage code: :mod:`.stage` (training data from the workspace's current shards, checkpoint folders, the
ledger's codec and model records).
"""
