import io

import numpy as np
import pytest
import soundfile as sf

from shared.media.decode import Waveform, load_media, resample


def test_media_type_is_sniffed_from_content_not_name(tmp_path, shapes_image):
    disguised = tmp_path / "looks_like.wav"
    shapes_image.save(disguised, format="PNG")
    kind, media = load_media(disguised)
    assert kind == "image" and media.size == (64, 64) and media.mode == "RGB"
    buf = io.BytesIO()
    sf.write(buf, np.stack([np.ones(800), -np.ones(800)], axis=1).astype(np.float32), 8000, format="FLAC")
    audio = tmp_path / "looks_like.png"
    audio.write_bytes(buf.getvalue())
    kind, wave = load_media(audio)
    assert kind == "audio" and wave.sample_rate == 8000 and wave.seconds == pytest.approx(0.1)
    np.testing.assert_allclose(wave.samples, 0.0, atol=1e-4)  # stereo averaged to mono (16-bit FLAC)


def test_resample_keeps_duration():
    wave = Waveform(np.sin(np.linspace(0, 200, 8000)).astype(np.float32), 8000)
    out = resample(wave, 16000)
    assert out.sample_rate == 16000 and len(out.samples) == 16000 and out.samples.dtype == np.float32
    assert resample(wave, 8000) is wave


def test_fit_side_area_downscales_only_what_is_larger_and_never_lengthens_a_perturbation():
    import numpy as np
    from PIL import Image

    from shared.media.decode import fit_side

    rng = np.random.default_rng(0)
    x = rng.integers(0, 200, (300, 1200, 3), dtype=np.uint8)
    delta = rng.integers(0, 40, x.shape, dtype=np.uint8)
    small = Image.fromarray(x[:100, :100])
    assert fit_side(small, 256) is small
    clean, attacked = fit_side(Image.fromarray(x), 256), fit_side(Image.fromarray(x + delta), 256)
    assert clean.size == (256, 64)  # the aspect ratio kept
    shrunk = np.asarray(attacked, dtype=np.float64) - np.asarray(clean, dtype=np.float64)
    assert np.linalg.norm(shrunk) <= np.linalg.norm(delta.astype(np.float64))
