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
