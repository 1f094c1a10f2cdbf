"""Channel code of the watermark payload: CRC-16, then a terminated K=7 rate-1/3 convolutional code.

::

    payload (32 bits) | CRC-16 (16 bits) | 6 zero tail bits      message, 54 bits
            |  convolutional encoder, generators 133, 171, 165 (octal), constraint length 7
            v
    coded bits, 3 per message bit: 162 bits, sent as +1 (bit 0) / -1 (bit 1)

The decoder is a soft-decision Viterbi over the 64 encoder states, batched over all the detector's alignments at
once. Soft inputs are correlations (positive means bit 0), so the path metric is a plain sum of products.

Why a CRC behind the code: the detector accepts only a decoded word whose CRC holds, so a wrong payload
needs a decoding error that also passes the CRC (probability about 2**-16), and the detector's false-positive
bound is a union over the 2**32 CRC-valid codewords, not over every decodable one. The Viterbi decoder also
returns each word's correlation with the soft symbols: the detector's score is built from it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

PAYLOAD_BITS = 32
CRC_BITS = 16
CONSTRAINT = 7
GENERATORS = (0o133, 0o171, 0o165)
TAIL_BITS = CONSTRAINT - 1
MESSAGE_BITS = PAYLOAD_BITS + CRC_BITS
CODED_BITS = (MESSAGE_BITS + TAIL_BITS) * len(GENERATORS)
_STATES = 1 << (CONSTRAINT - 1)
_CRC_POLY = 0x1021  # CRC-16/CCITT


def crc16(value: int, bits: int = PAYLOAD_BITS) -> int:
    """CRC-16/CCITT (init 0xFFFF) over the ``bits`` low bits of ``value``, most significant first."""
    crc = 0xFFFF
    for i in range(bits - 1, -1, -1):
        feedback = ((crc >> 15) ^ (value >> i)) & 1
        crc = (crc << 1) & 0xFFFF
        if feedback:
            crc ^= _CRC_POLY
    return crc


def _to_bits(value: int, bits: int) -> np.ndarray:
    return np.array([(value >> i) & 1 for i in range(bits - 1, -1, -1)], dtype=np.uint8)


def _from_bits(bits: np.ndarray) -> int:
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


@lru_cache(maxsize=1)
def _register_outputs() -> np.ndarray:
    """BPSK symbols (+1/-1) emitted for each 7-bit register value (input bit on top): ``[128, 3]``."""
    registers = np.arange(1 << CONSTRAINT)
    out = np.empty((registers.size, len(GENERATORS)), dtype=np.float32)
    for g, generator in enumerate(GENERATORS):
        parity = np.array([bin(int(r) & generator).count("1") & 1 for r in registers])
        out[:, g] = 1.0 - 2.0 * parity
    return out


def encode(payload: int) -> np.ndarray:
    """Payload to the ``CODED_BITS`` BPSK symbols (+1/-1, float32) sent in the watermark."""
    if not 0 <= payload < 1 << PAYLOAD_BITS:
        raise ValueError(f"payload must fit in {PAYLOAD_BITS} bits, got {payload}")
    message = np.concatenate([
        _to_bits(payload, PAYLOAD_BITS),
        _to_bits(crc16(payload), CRC_BITS),
        np.zeros(TAIL_BITS, dtype=np.uint8),
    ])
    outputs = _register_outputs()
    state = 0
    symbols = np.empty((message.size, len(GENERATORS)), dtype=np.float32)
    for t, bit in enumerate(message):
        register = (int(bit) << (CONSTRAINT - 1)) | state
        symbols[t] = outputs[register]
        state = register >> 1
    return symbols.reshape(-1)


def viterbi(soft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood messages for soft symbols ``[batch, CODED_BITS]``, and how well each fits.

    Returns the message bits ``[batch, MESSAGE_BITS]`` and the correlation of the soft symbols with the
    codeword of each (``sum(soft * encode(message))``, ``[batch]``): the largest over all terminated codewords.
    Positive soft values favour coded bit 0. The path starts and ends in state 0 (the zero tail).
    """
    branch = _branches(soft)
    steps, _, batch = branch.shape[:3]
    metric = np.full((batch, _STATES), -np.inf, dtype=np.float32)
    metric[:, 0] = 0.0
    decisions = np.empty((steps, batch, _STATES), dtype=bool)
    for t in range(steps):
        pairs = metric.reshape(batch, 1, _STATES // 2, 2)
        via0 = pairs[..., 0] + branch[t, 0]  # [B, 2, 32]: next state = 32 * half + n
        via1 = pairs[..., 1] + branch[t, 1]
        decisions[t] = (via1 > via0).reshape(batch, _STATES)
        metric = np.maximum(via0, via1).reshape(batch, _STATES)
    fit = metric[:, 0].copy()
    state = np.zeros(batch, dtype=np.int64)
    message = np.empty((batch, steps), dtype=np.uint8)
    rows = np.arange(batch)
    for t in range(steps - 1, -1, -1):
        message[:, t] = state >> (CONSTRAINT - 2)  # the input bit is the newest bit of the next state
        register = (state << 1) | decisions[t, rows, state]
        state = register & (_STATES - 1)
    return message[:, :MESSAGE_BITS], fit


def list_viterbi(soft: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``size`` best messages for each row of soft symbols (parallel list Viterbi), best first.

    Returns bits ``[batch, size, MESSAGE_BITS]`` and correlations ``[batch, size]`` (``-inf`` where fewer
    distinct paths exist). Where the best word fails its CRC, a near rival that passes it is usually the sent
    word: the CRC then chooses within the list.
    """
    branch = _branches(soft)
    steps, _, batch = branch.shape[:3]
    half = _STATES // 2
    metric = np.full((batch, _STATES, size), -np.inf, dtype=np.float32)
    metric[:, 0, 0] = 0.0
    choices = np.empty((steps, batch, _STATES, size), dtype=np.int16)  # lsb * size + rank of the predecessor
    for t in range(steps):
        pairs = metric.reshape(batch, 1, half, 2, size)  # [B, 1, m, lsb, rank]: previous state 2 m + lsb
        moves = branch[t].transpose(1, 2, 3, 0)[..., None]  # [B, h, m, lsb, 1]: into next state 32 h + m
        candidates = (pairs + moves).reshape(batch, _STATES, 2 * size)
        order = np.argsort(-candidates, axis=-1, kind="stable")[..., :size]
        choices[t] = order
        metric = np.take_along_axis(candidates, order, axis=-1)
    fit = metric[:, 0, :].copy()
    state = np.zeros((batch, size), dtype=np.int64)
    rank = np.tile(np.arange(size), (batch, 1))
    message = np.empty((batch, size, steps), dtype=np.uint8)
    rows = np.arange(batch)[:, None]
    for t in range(steps - 1, -1, -1):
        message[:, :, t] = state >> (CONSTRAINT - 2)
        choice = choices[t, rows, state, rank]
        state = ((state << 1) | (choice // size)) & (_STATES - 1)
        rank = choice % size
    return message[:, :, :MESSAGE_BITS], fit


def _branches(soft: np.ndarray) -> np.ndarray:
    """Branch metrics ``[steps, lsb, batch, h, m]`` of the move into next state ``32 h + m``.

    A register is ``2 * next_state + lsb`` and the previous state is ``register % 64``, so both moves into
    next states ``m`` and ``m + 32`` leave states ``2 (m % 32) + lsb``.
    """
    soft = np.atleast_2d(np.asarray(soft, dtype=np.float32))
    batch, steps = soft.shape[0], soft.shape[1] // len(GENERATORS)
    branch = soft.reshape(batch, steps, len(GENERATORS)) @ _register_outputs().T  # [B, S, 128]
    return np.ascontiguousarray(branch.reshape(batch, steps, 2, _STATES // 2, 2).transpose(1, 4, 0, 2, 3))


def unpack(message: np.ndarray) -> tuple[int, bool]:
    """Split decoded message bits into ``(payload, crc_ok)``."""
    payload = _from_bits(message[:PAYLOAD_BITS])
    return payload, _from_bits(message[PAYLOAD_BITS:MESSAGE_BITS]) == crc16(payload)
