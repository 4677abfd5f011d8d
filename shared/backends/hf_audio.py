"""Qwen2-Audio (``Qwen2AudioForConditionalGeneration``) as a SmoothGuard generator.

Noise goes on the raw waveform (resampled to the feature extractor's rate), before the
feature extractor — the paper's placement for audio. One processor call and ONE ``generate``
per round.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import Qwen2AudioForConditionalGeneration

from shared.backends.hf_common import HFGenerator
from shared.media.decode import Waveform, resample
from shared.smoothing.noise import noisy_input
from shared.smoothing.types import NOISE_SPACES_BY_MODALITY, CandidateSpec


class HFAudioGenerator(HFGenerator):
    modality = "audio"
    noise_spaces = NOISE_SPACES_BY_MODALITY["audio"]
    auto_class = Qwen2AudioForConditionalGeneration

    def __init__(self, model_path: str, **kwargs):
        super().__init__(model_path, **kwargs)
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)

    def chat_text(self, prompt: str) -> str:
        messages = [
            {"role": "user", "content": [{"type": "audio", "audio_url": "input"}, {"type": "text", "text": prompt}]}
        ]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def noisy_waveforms(self, audio: Waveform, specs: Sequence[CandidateSpec]) -> list[np.ndarray]:
        wave = torch.from_numpy(resample(audio, self.sample_rate).samples.astype(np.float32))
        return [noisy_input(wave, s).numpy() for s in specs]

    def prepare(self, audio: Waveform, prompt: str, specs: Sequence[CandidateSpec]) -> dict:
        return self.encode_waves(self.noisy_waveforms(audio, specs), [prompt] * len(specs))

    def encode(self, clips: Sequence[Waveform], prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.encode_waves([resample(clip, self.sample_rate).samples for clip in clips], prompts)

    def encode_waves(self, waves: Sequence[np.ndarray], prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Waveforms at the model's sample rate and their prompts, padded into one batch."""
        out = self.processor(
            text=[self.chat_text(p) for p in prompts],
            audio=list(waves),
            sampling_rate=self.sample_rate,
            return_tensors="pt",
            padding=True,
        )
        return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
