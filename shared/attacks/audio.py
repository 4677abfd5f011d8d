"""PGD and EOT-PGD on the raw waveform of an audio-language model (Qwen2-Audio).

The waveform (resampled to the feature extractor's rate) is what the attack perturbs — L∞ or L2
in amplitude units — and Whisper's log-mel features are recomputed from it inside the graph, with
the recipe of ``WhisperFeatureExtractor._torch_extract_fbank_features``. EOT averages over the
defense's noise on the same waveform (``noise_space='waveform'``). Clips of equal length are
attacked as one batch (the image side groups images by size the same way).
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
    the clean teacher-forced CE of the target(s) on it, and the L∞ / L2 norms of its
    perturbation in amplitude units."""

    waves: list[np.ndarray]
    sample_rate: int
    losses: list[float]
    linf: list[float]
    l2: list[float]
    steps: int
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
    waveforms: Waveform | Sequence[Waveform],
    prompts: Sequence[str],
    targets: Sequence[str],
    config: AttackConfig,
) -> AudioAttackResult:
    """Attack ``waveforms[i]`` under ``prompts[i]`` towards (targeted) or away from ``targets[i]``;
    one ``Waveform`` is attacked under every prompt (one perturbation per prompt, or one for all
    with ``config.universal``). Samples beyond the feature extractor's window (which it
    truncates) are dropped."""
    t0 = time.perf_counter()
    _check_inputs(waveforms, prompts, targets, config)
    logmel = LogMel(generator.processor.feature_extractor)
    rate = int(generator.sample_rate)
    clips = [waveforms] if isinstance(waveforms, Waveform) else list(waveforms)
    waves = [resample(w, rate).samples[: logmel.n_samples].astype(np.float32) for w in clips]
    rows = [waves[0]] * len(prompts) if len(clips) == 1 else waves  # one clip: attacked under every prompt
    groups = [list(range(len(prompts)))] if config.universal else _length_groups(rows)
    out: dict[int, tuple[np.ndarray, float, float, float]] = {}  # wave, loss, linf, l2
    with frozen(generator.model):
        for group in groups:
            found = _attack_group(generator, logmel, [rows[i] for i in group], prompts, targets, group, config)
            out.update({group[k]: row for k, row in enumerate(found)})
    made = [out[i] for i in sorted(out)]
    return AudioAttackResult(
        waves=[m[0] for m in made],
        sample_rate=rate,
        losses=[m[1] for m in made],
        linf=[m[2] for m in made],
        l2=[m[3] for m in made],
        steps=config.steps,
        ms=(time.perf_counter() - t0) * 1e3,
    )


def _attack_group(
    generator: Any,
    logmel: LogMel,
    waves: list[np.ndarray],
    prompts: Sequence[str],
    targets: Sequence[str],
    group: list[int],
    config: AttackConfig,
) -> list[tuple[np.ndarray, float, float, float]]:
    """One batch of equal-length clips (rows ``group`` of the prompts; one shared row when
    universal): per row its adversarial wave, clean CE and perturbation norms."""
    dev, rate = generator.device, int(generator.sample_rate)
    x0 = torch.from_numpy(np.stack(waves[:1] if config.universal else waves)).to(dev)
    peak = float(np.abs(x0.cpu().numpy()).max(initial=0.0))
    bounds = (-max(1.0, peak), max(1.0, peak))  # float audio lives in [−1, 1]; never clip the clean wave
    batch = encode_targets(
        generator,
        [prompts[i] for i in group],
        [targets[i] for i in group],
        eos=config.target_eos,
        audio=waves,
        sampling_rate=rate,
    ).to(dev)
    attack, clean = objectives(
        generator.model, batch, audio_media(generator.model, logmel, config), config, generator.max_batch_size
    )
    adv = optimize(x0, attack, config, bounds)
    loss, _ = clean(adv, need_grad=False)
    linf, l2 = perturbation_norms(adv, x0)
    arrays = [w.detach().cpu().numpy().astype(np.float32) for w in adv]
    return list(zip(arrays, loss.tolist(), linf, l2, strict=True))


def _length_groups(waves: list[np.ndarray]) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(waves):
        groups.setdefault(len(w), []).append(i)
    return list(groups.values())


def audio_media(model: Any, logmel: LogMel, config: AttackConfig) -> MediaFn:
    """``input_features`` for a chunk of waveforms ``[R, T]``, with the defense's waveform noise
    where asked (the same draw for the same seed as the defense's candidate)."""
    add_noise = defense_noise(config)

    def media(x: torch.Tensor, noisy: bool) -> dict[str, torch.Tensor]:
        if noisy:
            x = add_noise(x, x.shape[0])
        return {"input_features": logmel(x).to(model.dtype)}

    return media


def _check_inputs(
    waveforms: Waveform | Sequence[Waveform], prompts: Sequence[str], targets: Sequence[str], config: AttackConfig
) -> None:
    if not prompts:
        raise ValueError("need at least one prompt")
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    if not isinstance(waveforms, Waveform):
        if config.universal and len(waveforms) != 1:
            raise ValueError("a universal attack takes one waveform")
        if not config.universal and len(waveforms) != len(prompts):
            raise ValueError(f"{len(waveforms)} waveforms but {len(prompts)} prompts (one each, or one Waveform)")
    (waveform,) = NOISE_SPACES_BY_MODALITY["audio"]
    if config.method == "eot" and config.noise_space != waveform:
        raise ValueError(
            f"audio EOT averages over waveform noise: set noise_space={waveform!r}, not {config.noise_space!r}"
        )
