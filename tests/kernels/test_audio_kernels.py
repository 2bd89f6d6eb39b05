"""Each numba kernel against its plain-numpy reference, on edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsynth_prep.features import Framed, Pooled, Trimmed
from nsynth_prep.kernels import audio as kernels


def _audio(dtype: type, n: int = 3, length: int = 64_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype is np.int16:
        a = rng.integers(-32768, 32768, size=(n, length), dtype=np.int16)
        if n:
            a[0, :100] = -32768  # extremes
            a[-1, :100] = 32767
        return a
    return (rng.integers(-32768, 32768, size=(n, length)) / 32768).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
@pytest.mark.parametrize("n", [0, 1, 5])
def test_pool_mean_matches_reference(dtype: type, n: int) -> None:
    audio = _audio(dtype, n)
    got = kernels.pool_mean(audio, 51_200, 25, 25)
    want = kernels.pool_mean_reference(audio, 51_200, 25, 25)
    assert got.shape == (n, 2048) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@given(length=st.integers(1, 300), kernel=st.integers(1, 30), stride=st.integers(1, 30))
@settings(max_examples=60, deadline=None)
def test_pool_mean_any_geometry(length: int, kernel: int, stride: int) -> None:
    if kernel > length:
        return
    audio = _audio(np.int16, 2, 300)
    np.testing.assert_allclose(kernels.pool_mean(audio, length, kernel, stride),
                               kernels.pool_mean_reference(audio, length, kernel, stride), rtol=1e-6, atol=1e-7)


def test_int16_and_float_give_identical_features() -> None:
    """WAV (int16) and TFRecord (int16 / 32768 as float32) sources must agree bit for bit."""
    pcm = _audio(np.int16, 4)
    floats = pcm.astype(np.float32) / 32768
    for spec in (Pooled(), Framed(), Trimmed()):
        assert np.array_equal(spec.compute(pcm), spec.compute(floats)), spec.name


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_trim_and_frame_match_reference(dtype: type) -> None:
    audio = _audio(dtype, 3)
    trimmed = kernels.trim(audio, 51_200)
    assert trimmed.dtype == np.int16
    np.testing.assert_array_equal(trimmed, kernels.trim_reference(audio, 51_200))
    got = kernels.frame(audio, 100, 160)
    assert got.shape == (3, 100, 160) and got.dtype == np.int16
    np.testing.assert_array_equal(got, kernels.frame_reference(audio, 100, 160))
    pcm = audio if dtype is np.int16 else (audio.astype(np.float64) * 32768).astype(np.int16)
    np.testing.assert_array_equal(got[1, 3], pcm[1, 480:640])


# Floats that are int16 / 32768 and floats that are not, as a TFRecord could hold them.
EXACT = np.array([0.0, -0.0, -1.0, 32767 / 32768, 1 / 32768, -1 / 32768, 0.5, -0.25], np.float32)
INEXACT = [1.0, 1.5, -1.0 - 1 / 32768, 0.5 / 32768, 1e-7, 0.1, np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_int16_is_exact_on_16_bit_floats(dtype: type) -> None:
    audio = np.tile(EXACT.astype(dtype), (2, 3))
    got = kernels.to_int16(audio)
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, kernels.to_int16_reference(audio))
    np.testing.assert_array_equal(got[0, :8], [0, 0, -32768, 32767, 1, -1, 16384, -8192])
    # and back: int16 * 2**-15 in float32 is the float the source held (-0.0 comes back as 0.0)
    back = got.astype(np.float32) * np.float32(kernels.INT16_SCALE)
    np.testing.assert_array_equal(back, audio.astype(np.float32))
    plain = ~((audio == 0) & np.signbit(audio))
    assert back[plain].tobytes() == audio[plain].astype(np.float32).tobytes()


@pytest.mark.parametrize("bad", INEXACT)
def test_to_int16_refuses_what_is_not_a_16_bit_sample(bad: float) -> None:
    audio = np.zeros((3, 50), np.float32)
    audio[2, 17] = bad
    for convert in (kernels.to_int16, kernels.to_int16_reference):
        with pytest.raises(kernels.InexactAudio) as info:
            convert(audio)
        assert (info.value.note, info.value.sample) == (2, 17)
        assert "not a 16-bit sample" in str(info.value)
    assert kernels.first_inexact(audio[2]) == 17 and kernels.first_inexact(audio[1]) == -1


def test_to_int16_keeps_int16_and_only_the_first_samples() -> None:
    pcm = _audio(np.int16, 2, 100)
    got = kernels.to_int16(pcm, 40)
    assert got.shape == (2, 40) and not np.shares_memory(got, pcm)
    np.testing.assert_array_equal(got, pcm[:, :40])
    floats = pcm.astype(np.float32) / 32768
    floats[0, 60] = 0.3  # past the samples kept: never looked at
    np.testing.assert_array_equal(kernels.to_int16(floats, 40), pcm[:, :40])


def test_frame_refuses_an_out_it_cannot_fill() -> None:
    out = np.empty((2, 100, 320), np.int16)[:, :, :160]  # not contiguous: reshape would copy
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.frame(_audio(np.int16, 2), 100, 160, out)


def test_extremes_stay_in_range() -> None:
    audio = np.full((2, 64_000), -32768, np.int16)
    audio[1] = 32767
    pooled = kernels.pool_mean(audio, 51_200, 25, 25)
    assert pooled[0].min() == -1.0 and pooled[1].max() == np.float32(32767 / 32768)


def test_short_or_bad_audio_is_refused() -> None:
    with pytest.raises(ValueError, match="needs 51200"):
        kernels.pool_mean(np.zeros((1, 1000), np.int16), 51_200, 25, 25)
    with pytest.raises(ValueError, match="notes, samples"):
        kernels.trim(np.zeros(64_000, np.int16), 10)
    with pytest.raises(TypeError, match="int16 or float32"):
        kernels.trim(np.zeros((1, 100), np.int32), 10)


def test_out_argument_is_filled_in_place() -> None:
    audio = _audio(np.int16, 2)
    out = np.empty((2, 2048), np.float32)
    assert kernels.pool_mean(audio, 51_200, 25, 25, out) is out
    np.testing.assert_allclose(out, kernels.pool_mean_reference(audio, 51_200, 25, 25), rtol=1e-6)
