"""PGD and EOT-PGD on the raw waveform of an audio-language model (Qwen2-Audio).

The waveform (resampled to the feature extractor's rate) is what the attack perturbs — L∞ in
amplitude units — and Whisper's log-mel features are recomputed from it inside the graph, with
the recipe of ``WhisperFeatureExtractor._torch_extract_fbank_features``. EOT averages over the
defense's noise on the same waveform (``noise_space='waveform'``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from shared.attacks.config import AttackConfig
from shared.attacks.losses import encode_targets
from shared.attacks.objective import MediaFn, defense_noise, frozen, objectives, optimize
from shared.attacks.threat import perturbation_norms
from shared.media.decode import Waveform, resample
from shared.smoothing.types import NOISE_SPACES_BY_MODALITY


@dataclass
class AudioAttackResult:
    """One adversarial waveform per prompt (one when universal), float32 at ``sample_rate``;
    the clean teacher-forced CE of the target(s) on it, and the L∞ norm of its perturbation."""

    waves: list[np.ndarray]
    sample_rate: int
    losses: list[float]
    linf: list[float]
    ms: float


class LogMel:
    """Whisper's log-mel spectrogram, differentiable: ``[R, T]`` waveforms -> ``[R, n_mels, frames]``.

    Pads (or truncates) to the extractor's ``n_samples``; |STFT|² of a periodic Hann window
    without its last frame, mel filter bank, log10 clamped at 1e-10, floored at the row's
    maximum − 8, then (x + 4) / 4."""

    def __init__(self, feature_extractor: Any):
        fe = feature_extractor
        self.n_fft, self.hop, self.n_samples = int(fe.n_fft), int(fe.hop_length), int(fe.n_samples)
        self.padding_value = float(getattr(fe, "padding_value", 0.0))
        self.filters = torch.as_tensor(np.asarray(fe.mel_filters), dtype=torch.float32)  # [n_freq, n_mels]

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        wave = wave[:, : self.n_samples]
        wave = F.pad(wave, (0, self.n_samples - wave.shape[1]), value=self.padding_value)
        window = torch.hann_window(self.n_fft, device=wave.device)
        stft = torch.stft(wave, self.n_fft, self.hop, window=window, return_complex=True)
        power = torch.view_as_real(stft[..., :-1]).pow(2).sum(-1)  # |z|², with a gradient at z = 0
        mel = self.filters.to(wave.device).T @ power
        log = mel.clamp(min=1e-10).log10()
        log = torch.maximum(log, log.amax(dim=(1, 2), keepdim=True) - 8.0)
        return (log + 4.0) / 4.0


def attack_audio(
    generator: Any,
    waveform: Waveform,
    prompts: Sequence[str],
    targets: Sequence[str],
    config: AttackConfig,
) -> AudioAttackResult:
    """Attack ``waveform`` under each of ``prompts`` towards (targeted) or away from ``targets``
    (one perturbation per prompt, or one for all with ``config.universal``). Samples beyond the
    feature extractor's window (which it truncates) are dropped."""
    t0 = time.perf_counter()
    _check_inputs(prompts, targets, config)
    logmel = LogMel(generator.processor.feature_extractor)
    rate = int(generator.sample_rate)
    wave = resample(waveform, rate).samples[: logmel.n_samples].astype(np.float32)
    dev = generator.device
    rows = len(prompts)
    x0 = torch.from_numpy(wave).to(dev)[None].repeat(1 if config.universal else rows, 1)
    peak = float(np.abs(wave).max(initial=0.0))
    bounds = (-max(1.0, peak), max(1.0, peak))  # float audio lives in [−1, 1]; never clip the clean wave
    batch = encode_targets(
        generator, prompts, targets, eos=config.target_eos, audio=[wave] * rows, sampling_rate=rate
    ).to(dev)
    media = audio_media(generator.model, logmel, config)
    attack, clean = objectives(generator.model, batch, media, config, generator.max_batch_size)
    with frozen(generator.model):
        adv = optimize(x0, attack, config, bounds)
        loss, _ = clean(adv, need_grad=False)
    linf, _ = perturbation_norms(adv, x0)
    return AudioAttackResult(
        waves=[w.detach().cpu().numpy().astype(np.float32) for w in adv],
        sample_rate=rate,
        losses=loss.tolist(),
        linf=linf,
        ms=(time.perf_counter() - t0) * 1e3,
    )


def audio_media(model: Any, logmel: LogMel, config: AttackConfig) -> MediaFn:
    """``input_features`` for a chunk of waveforms ``[R, T]``, with the defense's waveform noise
    where asked (the same draw for the same seed as the defense's candidate)."""
    add_noise = defense_noise(config)

    def media(x: torch.Tensor, noisy: bool) -> dict[str, torch.Tensor]:
        if noisy:
            x = add_noise(x, x.shape[0])
        return {"input_features": logmel(x).to(model.dtype)}

    return media


def _check_inputs(prompts: Sequence[str], targets: Sequence[str], config: AttackConfig) -> None:
    if not prompts:
        raise ValueError("need at least one prompt")
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    (waveform,) = NOISE_SPACES_BY_MODALITY["audio"]
    if config.method == "eot" and config.noise_space != waveform:
        raise ValueError(
            f"audio EOT averages over waveform noise: set noise_space={waveform!r}, not {config.noise_space!r}"
        )
    if config.norm != "linf":
        raise ValueError("audio attacks are L-inf in amplitude units (norm='linf')")
