"""Release: generated audio leaves only screened, watermarked and signed.

Pure: :mod:`.watermark` and :mod:`.watermark_code` (the keyed STFT watermark and its error-correcting code).
Stage code: :mod:`.gate` (screen, mark, sign, record: the release gate), :mod:`.generate` (generate with a
workspace model, then the gate).
"""
