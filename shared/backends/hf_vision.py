"""Any ``AutoModelForImageTextToText`` + ``AutoProcessor`` (LLaVA-1.5, LLaVA-NeXT, Qwen2-VL,
Qwen2.5-VL, Idefics3/SmolVLM, …) as a SmoothGuard generator.

``normalized`` noise is added to the processor's ``pixel_values`` whatever its layout —
``[B, C, H, W]`` (LLaVA), ``[B, crops, C, H, W]`` (LLaVA-NeXT) or Qwen's flattened patches
``[num_patches, C*T*P*P]`` — since each candidate's block is the clean block plus noise of the
same shape. ``pixel`` noise goes on the [0, 1] image before the processor, clipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from shared.backends.hf_common import HFGenerator, repeat_batch
from shared.smoothing.noise import noisy_input, on_unit_image
from shared.smoothing.types import NOISE_SPACES_BY_MODALITY, CandidateSpec


class HFVisionGenerator(HFGenerator):
    modality = "image"
    noise_spaces = NOISE_SPACES_BY_MODALITY["image"]

    def chat_text(self, prompt: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def prepare(self, image: Image.Image, prompt: str, specs: Sequence[CandidateSpec]) -> dict[str, torch.Tensor]:
        """The model inputs for ``specs``, one candidate per batch entry, in order."""
        text = self.chat_text(prompt)
        spaces = {s.noise_space for s in specs}
        if spaces - set(self.noise_spaces):
            raise ValueError(f"unsupported noise space(s) {sorted(spaces - set(self.noise_spaces))}")
        if spaces and all(on_unit_image(s) for s in spaces):
            base = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
            images = [noisy_input(base, s).numpy() for s in specs]
            out = self.processor(images=images, text=[text] * len(specs), return_tensors="pt", do_rescale=False)
            return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
        clean = self.processor(images=[image.convert("RGB")], text=[text], return_tensors="pt")
        batch = repeat_batch(clean, len(specs), skip=("pixel_values",))
        batch["pixel_values"] = torch.cat([noisy_input(clean["pixel_values"], s) for s in specs])
        return batch

    def encode(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.processor(
            images=[im.convert("RGB") for im in images],
            text=[self.chat_text(p) for p in prompts],
            return_tensors="pt",
            padding=True,
        )
        return {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
