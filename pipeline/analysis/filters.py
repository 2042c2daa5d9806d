"""Signal clean-up along the time axis (axis 0): gap filling, outlier
rejection, smoothing and derivatives. NaN marks a missing sample throughout.

All functions take arrays ``[T, ...]`` (time first, any trailing shape) and
treat every trailing element as an independent series.
"""

from __future__ import annotations

import numpy as np

from pipeline.config import AnalysisParams

MAD_TO_SIGMA = 1.4826  # median absolute deviation of a normal distribution -> its sigma


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of True in a 1-D boolean array."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def fill_gaps(values: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation across interior NaN gaps of at most ``max_gap`` samples.

    Gaps at the start or end, and longer gaps, stay NaN (nothing is invented
    outside what was seen). Returns the filled copy and a boolean mask of the
    samples that were filled.
    """
    values = np.array(values, dtype=np.float64, copy=True)
    flat = values.reshape(values.shape[0], -1)
    filled = np.zeros(flat.shape, dtype=bool)
    if max_gap <= 0 or flat.shape[0] < 3:
        return values, filled.reshape(values.shape)
    for first in range(0, flat.shape[1], COLUMNS_PER_BLOCK):  # blocks: the index arrays stay small
        columns = slice(first, first + COLUMNS_PER_BLOCK)
        _fill_block(flat[:, columns], filled[:, columns], max_gap)
    return values, filled.reshape(values.shape)


COLUMNS_PER_BLOCK = 32


def _fill_block(flat: np.ndarray, filled: np.ndarray, max_gap: int) -> None:
    """``fill_gaps`` on the series ``flat [T, C]`` (a view, filled in place), marking ``filled``.
    The same arithmetic as ``np.interp`` between a gap's two valid neighbours."""
    n = flat.shape[0]
    valid = ~np.isnan(flat)
    index = np.arange(n)[:, None]
    before = np.maximum.accumulate(np.where(valid, index, -1), axis=0)  # last valid sample at or before
    after = np.minimum.accumulate(np.where(valid, index, n)[::-1], axis=0)[::-1]  # first valid at or after
    gap = ~valid & (before >= 0) & (after < n) & (after - before - 1 <= max_gap)
    rows, columns = np.nonzero(gap)
    if not rows.size:
        return
    lo, hi = before[rows, columns], after[rows, columns]
    start, stop = flat[lo, columns], flat[hi, columns]
    slope = (stop - start) / (hi - lo).astype(np.float64)
    flat[rows, columns] = slope * (rows - lo).astype(np.float64) + start
    filled[rows, columns] = True


def hampel_mask(values: np.ndarray, window: int, threshold: float, floor: float) -> np.ndarray:
    """Outliers by the Hampel rule: a sample farther from the median of its
    window (``window`` samples, odd, centred) than ``threshold`` robust sigmas
    of that window (1.4826 x its median absolute deviation from that median),
    and farther than ``floor`` (absolute, so that a still series does not flag
    its own noise). NaN samples are never outliers; NaN neighbours are replaced
    by the nearest valid sample so that gaps do not pull the statistics.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] < window:
        return np.zeros(values.shape, dtype=bool)
    half = window // 2
    flat = _nearest_fill(values).reshape(values.shape[0], -1)
    padded = np.pad(flat, ((half, half), (0, 0)), mode="edge")
    mask = np.zeros(flat.shape, dtype=bool)
    for start in range(0, flat.shape[0], ROWS_PER_BLOCK):  # blocks: the windows stay small on long tracks
        stop = min(start + ROWS_PER_BLOCK, flat.shape[0])
        windows = np.lib.stride_tricks.sliding_window_view(padded[start : stop + 2 * half], window, axis=0)
        median = np.median(windows, axis=-1)
        mad = np.median(np.abs(windows - median[..., None]), axis=-1)
        deviation = np.abs(flat[start:stop] - median)
        mask[start:stop] = deviation > np.maximum(threshold * MAD_TO_SIGMA * mad, floor)
    return mask.reshape(values.shape) & ~np.isnan(values)


ROWS_PER_BLOCK = 2048


def _nearest_fill(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(values.shape[0], -1).copy()
    for j in range(flat.shape[1]):
        series = flat[:, j]
        valid = np.flatnonzero(~np.isnan(series))
        if valid.size == 0:
            series[:] = 0.0
            continue
        nearest = valid[np.clip(np.searchsorted(valid, np.arange(len(series))), 0, valid.size - 1)]
        series[:] = series[nearest]
    return flat.reshape(values.shape)


def odd_window(seconds: float, fps: float, minimum: int) -> int:
    """An odd window length in samples covering about ``seconds`` at ``fps``."""
    frames = max(minimum, int(round(seconds * fps)))
    return frames if frames % 2 else frames + 1


def savgol(values: np.ndarray, window: int, order: int) -> np.ndarray:
    """Savitzky-Golay smoothing applied to each run of valid samples.

    A run shorter than the window is smoothed with the longest odd window it
    allows (kept as is when that is not more than ``order``); NaN stays NaN.
    """
    from scipy.signal import savgol_filter  # imported when used: the driver never needs scipy

    def smooth(segment: np.ndarray, start: int) -> np.ndarray:
        length = segment.shape[0]
        w = min(window, length if length % 2 else length - 1)
        return savgol_filter(segment, w, order, axis=0) if w > order else segment

    return _per_valid_run(values, smooth)


def butterworth(values: np.ndarray, fs_hz: float, cutoff_hz: float, order: int) -> np.ndarray:
    """Zero-phase low-pass Butterworth filter applied to each run of valid samples.

    The ``order``-th order filter (``scipy.signal.butter``, second-order sections) is
    run forwards and backwards (``sosfiltfilt``): no delay, and the gain is the
    square of the filter's, ``1 / (1 + (f / cutoff_hz) ** (2 * order))`` (0.5, -6 dB,
    at the cutoff). It assumes even sampling at ``fs_hz``: at a variable frame rate
    it is given one typical rate (the analyzer's: the analysed frames' average
    rate), as the Savitzky-Golay window is.

    When ``cutoff_hz >= fs_hz / 2`` (e.g. ``--sample_fps 10`` with a 6 Hz cutoff) the
    samples hold nothing above the cutoff and the values come back unchanged. A run
    shorter than the default padding is padded by ``len(run) - 1`` samples; a run of
    fewer than 3 samples is kept as is. NaN stays NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    if cutoff_hz >= fs_hz / 2:
        return values.copy()
    from scipy.signal import butter, sosfiltfilt  # imported when used: the driver never needs scipy

    sos = butter(order, cutoff_hz, btype="low", output="sos", fs=fs_hz)
    # sosfiltfilt's default padlen (scipy's formula for second-order sections)
    default_pad = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))

    def smooth(segment: np.ndarray, start: int) -> np.ndarray:
        length = segment.shape[0]
        if length < MIN_BUTTERWORTH_RUN:
            return segment
        return sosfiltfilt(sos, segment, axis=0, padlen=min(default_pad, length - 1))

    return _per_valid_run(values, smooth)


MIN_BUTTERWORTH_RUN = 3  # shorter runs are kept as is (nothing to filter them against)


def smooth(values: np.ndarray, params: AnalysisParams, rate: float) -> np.ndarray:
    """Positions smoothed as ``params.smoothing_filter`` says (``--filter``), at the
    sampling rate ``rate`` (Hz; one typical rate at a variable frame rate):
    "savgol" (Savitzky-Golay, window ``smoothing_window_s``, ``smoothing_order``),
    "butterworth" (zero-phase low-pass at ``cutoff_hz``, ``butterworth_order``) or
    "none" (a float64 copy). Each run of valid samples on its own; NaN stays NaN."""
    kind = params.smoothing_filter
    if kind == "savgol":
        window = odd_window(params.smoothing_window_s, rate, params.smoothing_order + 3)
        return savgol(values, window, params.smoothing_order)
    if kind == "butterworth":
        return butterworth(values, rate, params.cutoff_hz, params.butterworth_order)
    if kind == "none":
        return np.array(values, dtype=np.float64, copy=True)
    raise ValueError(f"unknown smoothing filter {kind!r}")


def time_derivative(values: np.ndarray, times_s: np.ndarray) -> np.ndarray:
    """d values / dt with central differences on the actual sample times
    (uneven spacing allowed), within each run of valid samples; NaN elsewhere
    and on runs of a single sample."""
    times_s = np.asarray(times_s, dtype=np.float64)

    def derivative(segment: np.ndarray, start: int) -> np.ndarray:
        if segment.shape[0] < 2:
            return np.full(segment.shape, np.nan)
        return np.gradient(segment, times_s[start : start + segment.shape[0]], axis=0)

    return _per_valid_run(values, derivative)


def _per_valid_run(values: np.ndarray, apply) -> np.ndarray:
    """Apply ``apply(segment, start)`` to each run of valid samples of each
    trailing series; series with the same valid runs (a person seen or not)
    are processed together."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    flat_in = values.reshape(values.shape[0], -1)
    flat_out = out.reshape(out.shape[0], -1)
    valid = ~np.isnan(flat_in)
    groups: dict[bytes, list[int]] = {}
    for j in range(flat_in.shape[1]):
        groups.setdefault(valid[:, j].tobytes(), []).append(j)
    for columns in groups.values():
        for start, stop in runs(valid[:, columns[0]]):
            segment = flat_in[start:stop, columns]
            flat_out[start:stop, columns] = apply(segment, start)
    return out
