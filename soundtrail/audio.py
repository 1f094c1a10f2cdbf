"""Audio decoding, mix-down, resampling and level checks.

Decoding goes through soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3) because the
registry's torchaudio needs torchcodec to load files. Everything returns float32 NumPy arrays
shaped ``[channels, samples]``; tensors are made only where a model needs them.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from numpy.lib.stride_tricks import sliding_window_view

MAX_CHANNELS = 64
MAX_SAMPLE_RATE = 768_000


class AudioError(ValueError):
    """A file that cannot be used as audio; the message is the reason shown to the user."""


@dataclass(frozen=True)
class AudioInfo:
    """What the container header says, checked for sanity before any decoding."""

    sample_rate: int
    channels: int
    frames: int
    container: str
    codec: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def probe(path: str | Path) -> AudioInfo:
    """Read and validate the header of ``path`` without decoding the samples."""
    with _open_checked(Path(path)) as handle:
        return _header(handle)


@dataclass(frozen=True)
class DecodeLimits:
    """The most one file may decode to: longer or larger files are refused, from the header before any sample is
    read, and again while decoding. Decoded size counts float32 samples (frames x channels x 4 bytes)."""

    max_duration_s: float
    max_decoded_mb: float


class AudioLimitError(AudioError):
    """A file over a :class:`DecodeLimits` bound; ``limit`` names the field it broke."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class AudioStream:
    """One file opened once (header checked, and held to ``limits`` when given) and decoded block by block.

    Memory stays that of one block whatever the file's length: :meth:`blocks` refills one buffer of
    ``BLOCK_BYTES`` (whatever the channel count), and counts
    frames, the sum of squared samples (for :attr:`level_dbfs`) and their finiteness as it goes; the end of the
    stream is checked for truncation. libsndfile never decodes more frames than the header states (a lying
    header means a shorter read, caught as truncation), so the header check bounds the work; the frame count is
    held to the limits again while decoding, for a header that states no length.
    """

    # Each block costs a fixed overhead on its way (soundfile's position bookkeeping, the decimating filter's
    # set-up, Chromaprint's feed), which blocks of a second or two turn into a large share of ingest's time;
    # blocks of ~24 s of CD stereo make it noise while a worker's memory stays a few tens of MB (measured:
    # benchmarks/RESULTS.md).
    BLOCK_BYTES = 8 << 20

    def __init__(self, path: str | Path, limits: DecodeLimits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits
        self._handle = _open_checked(self.path)
        try:
            self.info = _header(self._handle)
            self._check_limits(self.info.frames, "the header states")
        except BaseException:
            self._handle.close()
            raise
        self.frames_read = 0
        self.energy = 0.0

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._handle.close()

    @property
    def level_dbfs(self) -> float:
        """Root-mean-square level of what was decoded, in dB relative to full scale (-inf for digital silence)."""
        return _dbfs(self.energy, self.frames_read * self.info.channels)

    @property
    def block_frames(self) -> int:
        return max(1, self.BLOCK_BYTES // (4 * self.info.channels))

    def blocks(self, block_frames: int | None = None) -> Iterator[np.ndarray]:
        """float32 frames ``[n, channels]`` in file order. Each block is valid until the next: the buffer is reused."""
        buffer = np.empty((block_frames or self.block_frames, self.info.channels), dtype=np.float32)
        return self._decode(itertools.repeat(buffer))

    def read_all(self) -> np.ndarray:
        """The whole file as float32 frames ``[samples, channels]``, decoded into one array of the header's length."""
        whole = np.empty((self.info.frames, self.info.channels), dtype=np.float32)
        step = self.block_frames
        for _block in self._decode(whole[start:start + step] for start in range(0, len(whole), step)):
            pass
        return whole[:self.frames_read]

    def _decode(self, buffers: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for buffer in buffers:
            try:
                block = self._handle.read(out=buffer)
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                raise AudioError(f"decoding failed: {_clean(exc)}") from exc
            if not len(block):
                break
            self.frames_read += len(block)
            self._check_limits(self.frames_read, "decoding passed")
            energy = _sum_of_squares(block)
            if not math.isfinite(energy):  # finite exactly when every sample is
                raise AudioError("samples contain NaN or Inf")
            self.energy += energy
            yield block
            if len(block) < len(buffer):
                break
        self._check_complete()

    def _check_limits(self, frames: int, stated: str) -> None:
        if self.limits is None:
            return
        info, limits = self.info, self.limits
        seconds = frames / info.sample_rate
        if seconds > limits.max_duration_s:
            raise AudioLimitError(f"too long: {stated} {_duration(seconds)}, over the limit of "
                                  f"{_duration(limits.max_duration_s)}", "max_duration_s")
        megabytes = frames * info.channels * 4 / 1e6
        if megabytes > limits.max_decoded_mb:
            raise AudioLimitError(f"too large: {stated} {megabytes:,.0f} MB of decoded samples ({info.channels} "
                                  f"channels at {info.sample_rate} Hz), over the limit of "
                                  f"{limits.max_decoded_mb:,.0f} MB", "max_decoded_mb")

    def _check_complete(self) -> None:
        if self.frames_read == 0:
            raise AudioError("no audio frames could be decoded")
        if self.info.frames and self.frames_read < 0.98 * self.info.frames:
            raise AudioError(f"truncated: decoded {self.frames_read} of {self.info.frames} frames")
        _check_not_truncated(self.path, self.info, self.frames_read / self.info.sample_rate)


def decode(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32 ``[channels, samples]`` and its sample rate.

    Raises :class:`AudioError` for unreadable, truncated or non-finite audio.
    """
    with AudioStream(path) as stream:
        frames = stream.read_all()
    return np.ascontiguousarray(frames.T), stream.info.sample_rate


def _duration(seconds: float) -> str:
    """``1 h 02 min 05 s`` style, with the plain seconds: a refusal must be readable at a glance and exact."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
    return f"{text} ({seconds:,.0f} s)"


def _open_checked(path: Path) -> sf.SoundFile:
    _check_wav_header(path)
    try:
        return sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"not a readable audio file: {_clean(exc)}") from exc


def _header(handle: sf.SoundFile) -> AudioInfo:
    """The open file's header, refused when implausible."""
    if not 0 < handle.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(f"implausible sample rate in header: {handle.samplerate} Hz")
    if not 0 < handle.channels <= MAX_CHANNELS:
        raise AudioError(f"implausible channel count in header: {handle.channels}")
    return AudioInfo(
        sample_rate=int(handle.samplerate),
        channels=int(handle.channels),
        frames=max(int(handle.frames), 0),
        container=str(handle.format),
        codec=str(handle.subtype),
    )


def _check_wav_header(path: Path) -> None:
    """Name an implausible WAV header plainly (libsndfile only says its struct is "incomplete")."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        return
    position = 12
    while position + 8 <= len(head):
        chunk, size = head[position:position + 4], struct.unpack_from("<I", head, position + 4)[0]
        if chunk == b"fmt " and position + 16 <= len(head):
            channels, rate = struct.unpack_from("<HI", head, position + 10)
            if not 0 < rate <= MAX_SAMPLE_RATE:
                raise AudioError(f"implausible sample rate in header: {rate} Hz")
            if not 0 < channels <= MAX_CHANNELS:
                raise AudioError(f"implausible channel count in header: {channels}")
            return
        position += 8 + size + (size & 1)


def _check_not_truncated(path: Path, info: AudioInfo, decoded_s: float) -> None:
    """Catch cut-off files that libsndfile decodes without complaint.

    An Ogg stream must end with a page flagged end-of-stream; an MP3 whose Xing/Info header
    states its length must decode to about that length.
    """
    if info.container == "OGG":
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 65_536))
            tail = handle.read()
        last_page = tail.rfind(b"OggS")
        if last_page < 0 or last_page + 5 >= len(tail) or not tail[last_page + 5] & 0x04:
            raise AudioError("truncated: the Ogg stream ends without its end-of-stream page")
    elif info.container == "MP3":
        from mutagen.mp3 import MP3, HeaderNotFoundError

        try:
            stated = MP3(path).info.length
        except (HeaderNotFoundError, OSError, ValueError):
            return
        if stated and decoded_s < 0.95 * stated - 0.1:
            raise AudioError(f"truncated: decoded {decoded_s:.2f} s of the {stated:.2f} s the MP3 header states")


def mono(audio: np.ndarray) -> np.ndarray:
    """Average channels: ``[C, T]`` to ``[T]``."""
    return audio.mean(axis=0) if audio.ndim == 2 else audio


def mono_frames(frames: np.ndarray) -> np.ndarray:
    """Average channels of interleaved frames: ``[T, C]`` to ``[T]``, in one output buffer.

    Plain NumPy adds rather than a BLAS product: BLAS would start its own threads inside every parallel
    ingest worker and slow them all down.
    """
    total = frames[:, 0].copy()
    for channel in range(1, frames.shape[1]):
        total += frames[:, channel]
    if frames.shape[1] > 1:
        total *= np.float32(1.0 / frames.shape[1])
    return total


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited polyphase resampling along the last axis: scipy ``resample_poly``'s filter and output (to
    float32 rounding), computed as matrix products.

    Why not ``resample_poly`` itself: its loop does only the ~55 multiply-adds an output needs, but one at a
    time; the same sums laid out as one matrix product (see ``_polyphase_kernel``) take ~9x more multiply-adds at
    22.05 to 8 kHz and still run several times faster (measured: ``benchmarks/RESULTS.md``), and every screening
    query, watermark check and landmark index build resamples first. Odd pairs of rates, whose kernel would be
    large (44,100 to 44,099 Hz), go through ``resample_poly``. The order of a product's sums, and so its last-bit
    rounding, may differ between BLAS builds and CPUs: far less than any edit the screening methods are built to
    survive.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if source_rate == target_rate:
        return audio
    up, down = _ratio(source_rate, target_rate)
    outputs = -(-audio.shape[-1] * up // down)
    if not outputs:
        return np.zeros((*audio.shape[:-1], 0), dtype=np.float32)
    kernel, lead, block = _polyphase_kernel(up, down)
    if kernel is None:
        from scipy.signal import resample_poly

        return resample_poly(audio, up, down, axis=-1, window=_lowpass(up, down)).astype(np.float32)
    rows = audio.reshape(-1, audio.shape[-1])
    resampled = [_polyphase(row, kernel, lead, block * down)[:outputs] for row in rows]
    return np.stack(resampled).reshape(*audio.shape[:-1], outputs)


_LOWPASS_ZERO_CROSSINGS = 10  # a side, as resample_poly's default filter has
_MAX_KERNEL_ENTRIES = 1 << 20  # 4 MB of float32: every common pair of rates fits (22.05 to 8 kHz: 79,000)
_MIN_KERNEL_COLUMNS = 64  # a product with fewer output columns runs far below the machine's speed
_GROUPS_PER_PRODUCT = 4096  # bounds the copied input windows of one product to a few MB


def _polyphase(signal: np.ndarray, kernel: np.ndarray, lead: int, stride: int) -> np.ndarray:
    """One channel: output group ``g`` (the kernel's width of consecutive outputs) is the input window that starts
    ``g * stride`` samples into the signal after ``lead`` zeros, times the kernel; the tail is zeros."""
    width, columns = kernel.shape
    groups = -(-(len(signal) + lead) // stride)
    padded = np.zeros((groups - 1) * stride + width, dtype=np.float32)
    kept = min(len(signal), len(padded) - lead)
    padded[lead:lead + kept] = signal[:kept]
    windows = sliding_window_view(padded, width)[::stride]
    out = np.empty((groups, columns), dtype=np.float32)
    for start in range(0, groups, _GROUPS_PER_PRODUCT):
        np.matmul(windows[start:start + _GROUPS_PER_PRODUCT], kernel, out=out[start:start + _GROUPS_PER_PRODUCT])
    return out.reshape(-1)


@lru_cache(maxsize=16)
def _polyphase_kernel(up: int, down: int) -> tuple[np.ndarray | None, int, int]:
    """(kernel [window, block * up] float32 or None when too large, lead zeros, block).

    ``resample_poly`` gives output ``m`` as sum_j h[m * down + c - j * up] x[j], h being its filter times ``up``
    and c its centre. Outputs go in groups of ``block * up``; for output ``m = g * block * up + p`` and input
    ``j = g * block * down + q`` the weight is h[p * down + c - q * up], which depends on (q, p) alone: so
    the kernel's row q, column p. ``block`` > 1 when ``up`` alone would give a product too narrow to be fast.
    """
    block = -(-_MIN_KERNEL_COLUMNS // up)
    centre = _LOWPASS_ZERO_CROSSINGS * max(up, down)  # the filter has 2 * centre + 1 taps
    lowest = -(centre // up)  # the first q any output reads (negative: before the signal)
    highest = ((block * up - 1) * down + centre) // up
    if (highest - lowest + 1) * block * up > _MAX_KERNEL_ENTRIES:
        return None, 0, block
    taps = up * _lowpass(up, down)
    q = np.arange(lowest, highest + 1)[:, None]
    at = np.arange(block * up)[None, :] * down + centre - q * up
    kernel = np.where((at >= 0) & (at < len(taps)), taps[np.clip(at, 0, len(taps) - 1)], 0.0)
    return kernel.astype(np.float32), -lowest, block


@lru_cache(maxsize=64)
def _ratio(source_rate: int, target_rate: int) -> tuple[int, int]:
    divisor = math.gcd(source_rate, target_rate)
    return target_rate // divisor, source_rate // divisor


@lru_cache(maxsize=16)
def _lowpass(up: int, down: int) -> np.ndarray:
    """The filter ``resample_poly`` designs by default (Kaiser, beta 5, 10 zero crossings a side); it copies it."""
    from scipy.signal import firwin

    rate = max(up, down)
    return firwin(2 * _LOWPASS_ZERO_CROSSINGS * rate + 1, 1.0 / rate, window=("kaiser", 5.0))


def load_mono(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode, mix down and resample: the form every model and fingerprint consumes."""
    audio, rate = decode(path)
    return resample(mono(audio), rate, sample_rate)


def read_span(path: str | Path, start: int, length: int, sample_rate: int) -> np.ndarray:
    """``length`` mono samples at ``sample_rate`` from sample ``start`` (at that rate) of ``path``, zeros past its
    end, decoding only that stretch of the file: a random crop without decoding the whole file.

    At another rate the stretch is read from an input sample that lands exactly on an output sample, with a few
    milliseconds of context before and after, so the resampling filter sees the audio around the crop rather than
    silence: the crop is what resampling the whole file gives there (to the filter's float32 rounding).
    """
    with sf.SoundFile(str(path)) as handle:
        rate = int(handle.samplerate)
        if rate == sample_rate:
            handle.seek(min(start, handle.frames))
            audio = mono_frames(handle.read(length, dtype="float32", always_2d=True))
        else:
            up, down = _ratio(rate, sample_rate)  # output sample k * up is input sample k * down
            context = math.ceil(_SPAN_CONTEXT_S * sample_rate)
            block = max(0, start - context) // up
            skip = start - block * up
            handle.seek(min(block * down, handle.frames))
            count = math.ceil((skip + length + context) * down / up)
            audio = resample(mono_frames(handle.read(count, dtype="float32", always_2d=True)), rate, sample_rate)
            audio = audio[skip:skip + length]
    out = np.zeros(length, dtype=np.float32)
    out[:len(audio)] = audio
    return out


_SPAN_CONTEXT_S = 0.004  # a side: more than resample's 10 zero crossings at any rate above 2.5 kHz


def rms_dbfs(audio: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for digital silence), in any layout."""
    return _dbfs(_sum_of_squares(audio), audio.size)


def _dbfs(energy: float, count: int) -> float:
    power = energy / count if count else 0.0
    return 10.0 * math.log10(power) if power > 0 else float("-inf")


def _sum_of_squares(audio: np.ndarray) -> float:
    """Sum of squared samples without a temporary array (unlike ``np.square``) and without BLAS threads.

    Finite exactly when every sample is: float32 squares of huge finite samples that overflow are summed again
    in float64, which cannot overflow.
    """
    flat = audio.reshape(-1)
    energy = float(np.einsum("i,i->", flat, flat))
    if math.isfinite(energy):
        return energy
    return float(np.sum(np.square(flat, dtype=np.float64)))


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write ``[channels, samples]`` or ``[samples]`` audio as WAV, atomically."""
    from soundtrail.atomic import atomic_path

    frames = audio.T if audio.ndim == 2 else audio
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(frames, -1.0, 1.0), sample_rate, subtype=subtype, format="WAV")


def _clean(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
