"""The smoothing filters (``--filter savgol|butterworth|none``): measured frequency
responses against the theory, NaN runs, short runs, the Nyquist limit, the
settings' checks, and the two filters side by side on the sample clip's track."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.analysis import filters
from pipeline.analysis.analyzer import Analyzer
from pipeline.config import AnalysisParams
from pipeline.errors import ConfigError

FS = 30.0  # Hz: the sample clip's frame rate
SECONDS = 10.0
T = np.arange(int(SECONDS * FS)) / FS
MIDDLE = slice(int(0.1 * len(T)), int(0.9 * len(T)))  # away from the ends: 240 samples, whole cycles below
CUTOFF, ORDER = 6.0, 4


def sine(f: float) -> np.ndarray:
    return np.sin(2 * np.pi * f * T)


def gain(filtered: np.ndarray, f: float) -> float:
    """Signed gain at ``f`` on the middle 80%: the filtered series' projection on the input sine
    (the middle holds whole cycles of every frequency used, so sine and cosine are orthogonal)."""
    x = sine(f)[MIDDLE]
    return float(np.dot(filtered[MIDDLE], x) / np.dot(x, x))


def delay_samples(filtered: np.ndarray, f: float) -> float:
    """Delay of the filtered sine at ``f`` behind the input, in samples (from its phase)."""
    t = T[MIDDLE]
    s, c = np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)
    phase = np.arctan2(np.dot(filtered[MIDDLE], c), np.dot(filtered[MIDDLE], s))
    return float(-phase / (2 * np.pi * f) * FS)


def zero_phase_butterworth_gain(f: float, cutoff: float = CUTOFF, order: int = ORDER, fs: float = FS) -> float:
    """|H|^2 of the digital Butterworth filter run both ways. scipy designs it by the bilinear
    transform with the cutoff prewarped, so the analog 1 / (1 + (f/fc)^2n) holds with
    tan(pi f / fs) in place of f: they agree at low frequencies and at the cutoff (0.5),
    the digital one falls faster towards Nyquist (0 there)."""
    ratio = np.tan(np.pi * f / fs) / np.tan(np.pi * cutoff / fs)
    return float(1.0 / (1.0 + ratio ** (2 * order)))


# -- Butterworth ------------------------------------------------------------------------
def test_butterworth_passes_1hz_with_its_amplitude():
    filtered = filters.butterworth(sine(1.0), FS, CUTOFF, ORDER)
    peak = np.abs(filtered[MIDDLE]).max()
    assert peak == pytest.approx(1.0, abs=0.01)  # measured 1.0000
    assert gain(filtered, 1.0) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("f", [3.0, 6.0, 8.0, 12.0])
def test_butterworth_gain_follows_the_zero_phase_response(f):
    """Measured (middle 80%): 3 Hz 0.9984, 6 Hz 0.5000, 8 Hz 0.0325, 12 Hz 0.0000 -- the digital
    response to 1e-3. The analog formula would give 0.9961, 0.5, 0.091, 0.0039."""
    measured = gain(filters.butterworth(sine(f), FS, CUTOFF, ORDER), f)
    assert measured == pytest.approx(zero_phase_butterworth_gain(f), abs=0.005)
    analog = 1.0 / (1.0 + (f / CUTOFF) ** (2 * ORDER))
    assert measured <= analog + 0.005  # never above the analog prototype's response


def test_butterworth_halves_the_cutoff_and_removes_12hz():
    at_cutoff = gain(filters.butterworth(sine(CUTOFF), FS, CUTOFF, ORDER), CUTOFF)
    assert at_cutoff == pytest.approx(0.5, abs=0.02)  # -6 dB: -3 dB each way
    high = filters.butterworth(sine(12.0), FS, CUTOFF, ORDER)
    assert abs(gain(high, 12.0)) < 0.05
    assert np.abs(high[MIDDLE]).max() < 0.05


def test_butterworth_is_zero_phase():
    """The peaks of a 1 Hz cosine (on samples 0, 30, 60, ...) stay on the same samples; a filter
    run one way only delays them by ~2 samples (its group delay at 1 Hz)."""
    from scipy.signal import butter, sosfilt

    x = np.cos(2 * np.pi * T)
    filtered = filters.butterworth(x, FS, CUTOFF, ORDER)
    starts = range(MIDDLE.start, MIDDLE.stop - 30, 30)
    peaks_in = [start + int(np.argmax(x[start : start + 30])) for start in starts]
    peaks_out = [start + int(np.argmax(filtered[start : start + 30])) for start in starts]
    assert peaks_out == peaks_in
    assert abs(delay_samples(filters.butterworth(sine(1.0), FS, CUTOFF, ORDER), 1.0)) < 0.01
    one_way = sosfilt(butter(ORDER, CUTOFF, output="sos", fs=FS), sine(1.0))
    assert delay_samples(one_way, 1.0) > 1.5  # what the test would see of a delay


def test_butterworth_at_or_above_nyquist_keeps_the_values():
    """``--sample_fps 10`` with a 6 Hz cutoff: nothing above 5 Hz is in the samples."""
    x = np.random.default_rng(0).normal(size=(50, 3))
    x[10:13, 1] = np.nan
    for cutoff in (5.0, 6.0):
        out = filters.butterworth(x, 10.0, cutoff, ORDER)
        np.testing.assert_array_equal(out, x)
        assert out is not x
    assert not np.array_equal(filters.butterworth(x, 10.0, 4.9, ORDER), x, equal_nan=True)


# -- Savitzky-Golay as the analyzer sets it up ------------------------------------------
def savgol_30fps(values: np.ndarray) -> np.ndarray:
    p = AnalysisParams()
    window = filters.odd_window(p.smoothing_window_s, FS, p.smoothing_order + 3)
    assert (window, p.smoothing_order) == (7, 2)
    return filters.savgol(values, window, p.smoothing_order)


def test_savgol_passes_1hz():
    filtered = savgol_30fps(sine(1.0))
    assert gain(filtered, 1.0) == pytest.approx(1.0, abs=0.02)  # measured 0.9992
    assert np.abs(filtered[MIDDLE]).max() == pytest.approx(1.0, abs=0.02)


def test_savgol_near_10hz_is_a_sidelobe():
    """Measured: -0.2857 = -2/7 exactly. The 7-point quadratic filter's coefficients are
    (-2, 3, 6, 7, 6, 3, -2) / 21, so H(w) = (7 + 12 cos w + 6 cos 2w - 4 cos 3w) / 21, and
    at 10 Hz (w = 2 pi / 3) that is -6/21: past its first zero (7.7 Hz) the response comes
    back as an inverted sidelobe, at its extreme here. Savitzky-Golay keeps more of 10 Hz
    than of 8 Hz (0.065) or 12 Hz (0.0995): its stop band is poor, a Butterworth's is not."""
    measured = gain(savgol_30fps(sine(10.0)), 10.0)
    assert measured == pytest.approx(-2 / 7, abs=0.005)
    assert abs(measured) < 0.35  # under 50%, a little looser than measured
    assert abs(gain(filters.butterworth(sine(10.0), FS, CUTOFF, ORDER), 10.0)) < 0.01


# -- the dispatcher ---------------------------------------------------------------------
def test_smooth_dispatches_on_the_setting():
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(size=(120, 4, 2)), axis=0).astype(np.float32)
    x[40:45, 2] = np.nan
    savgol = filters.smooth(x, AnalysisParams(), FS)
    assert savgol.tobytes() == filters.savgol(x, 7, 2).tobytes()  # what the analyzer did before --filter
    butter = filters.smooth(x, AnalysisParams(smoothing_filter="butterworth", cutoff_hz=4.0), FS)
    assert butter.tobytes() == filters.butterworth(x, FS, 4.0, 4).tobytes()
    assert not np.array_equal(butter, savgol, equal_nan=True)
    none = filters.smooth(x, AnalysisParams(smoothing_filter="none"), FS)
    assert none.dtype == np.float64 and none.shape == x.shape
    np.testing.assert_array_equal(none, x.astype(np.float64))
    none[0, 0, 0] = 1e9
    assert x[0, 0, 0] != 1e9  # a copy


# -- NaN runs ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["butterworth", "savgol"])
def test_a_gap_splits_the_series_into_runs_filtered_alone(name):
    rng = np.random.default_rng(2)
    x = np.cumsum(rng.normal(size=(200, 3, 2)), axis=0)
    x[90:110, :2] = np.nan  # two series with the gap, one without
    x[150:152, 2, 1] = np.nan  # and one with a gap of its own
    params = AnalysisParams(smoothing_filter=name)
    out = filters.smooth(x, params, FS)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(x))
    for run in (slice(0, 90), slice(110, 200)):
        np.testing.assert_allclose(out[run, :2], filters.smooth(x[run, :2], params, FS), rtol=0, atol=1e-12)
    np.testing.assert_allclose(out[:, 2, 0], filters.smooth(x[:, 2, 0], params, FS), rtol=0, atol=1e-12)
    assert not np.allclose(out[:90, 0], x[:90, 0])  # really smoothed
    # across the gap nothing leaks: changing one run leaves the other as it was
    y = x.copy()
    y[:90, :2] += 100.0
    np.testing.assert_allclose(filters.smooth(y, params, FS)[110:, :2], out[110:, :2], rtol=0, atol=1e-12)
    assert not np.allclose(filters.smooth(y, params, FS)[:90, :2], out[:90, :2])


def test_runs_shorter_than_the_padding():
    """Order 4 pads by 15 samples by default; shorter runs are padded by their length - 1,
    and runs of 1 or 2 samples are kept as they are."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 2))
    x[[2, 5, 6, 15]] = np.nan  # runs: 2, 2, 1 (at 4), 8 (7..14), 24 (16..39)
    out = filters.butterworth(x, FS, CUTOFF, ORDER)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(x))
    np.testing.assert_array_equal(out[[0, 1, 3, 4]], x[[0, 1, 3, 4]])
    assert np.isfinite(out[7:15]).all() and np.isfinite(out[16:]).all()
    assert not np.allclose(out[7:15], x[7:15])  # an 8-sample run is still filtered
    assert np.abs(out[7:15]).max() < np.abs(x[7:15]).max() + 1e-9  # and not blown up
    for length in (3, 4, 15, 16):
        short = filters.butterworth(rng.normal(size=(length, 3)), FS, CUTOFF, ORDER)
        assert np.isfinite(short).all()


# -- the settings -----------------------------------------------------------------------
def test_the_settings_are_checked():
    with pytest.raises(ConfigError, match="median"):
        AnalysisParams(smoothing_filter="median")
    with pytest.raises(ConfigError, match="cutoff"):
        AnalysisParams(cutoff_hz=0)
    with pytest.raises(ConfigError):
        AnalysisParams(butterworth_order=0)


# -- the sample clip --------------------------------------------------------------------
def test_butterworth_and_savgol_agree_on_the_sample(sequential_track):
    """The man jumping on the box (the track test_identities analyses too): the two filters give
    angles a fraction of a degree apart (measured median 0.57 deg, p95 4.7 deg) and the same jumps."""
    track, meta = sequential_track(1)
    savgol = Analyzer(AnalysisParams(smoothing_filter="savgol"))(track, meta)
    butter = Analyzer(AnalysisParams(smoothing_filter="butterworth"))(track, meta)
    np.testing.assert_array_equal(np.isnan(butter.angles), np.isnan(savgol.angles))
    assert not np.array_equal(butter.angles, savgol.angles, equal_nan=True)
    difference = np.abs(butter.angles - savgol.angles)
    assert 0.05 < np.nanmedian(difference) < 2.0

    def jumps(analysis) -> list[tuple[int, int]]:
        return [(e["takeoff_frame"], e["landing_frame"]) for e in analysis.events if e["type"] == "jump"]

    assert len(jumps(savgol)) >= 4
    assert jumps(butter) == jumps(savgol)
