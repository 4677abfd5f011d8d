"""The processor's image preprocessing, split at the point where it becomes differentiable.

Outside the graph (once): the processor's own resize / center-crop / RGB conversion, run with
rescaling and normalisation switched off, gives the image ``x`` the attack optimises —
``[1, 3, H, W]`` float in [0, 1] at the resolution the model sees (a multiple of 1/255).
Inside the graph (every step): ``to_pixel_values`` rescales, normalises with the processor's
mean/std and lays ``x`` out as the model's ``pixel_values``:

- ``chw``: ``[B, C, H, W]`` (LLaVA-1.5 and other single-crop CLIP-style processors);
- ``patches``: Qwen2-VL / Qwen2.5-VL flattened patches ``[B·gh·gw, C·T·P·P]``, in the
  processor's order (merge blocks, then rows/columns inside a block, then C, T, P, P; the
  image repeated over the temporal patch).

So ``to_pixel_values(from_image(img))`` is the processor's ``pixel_values`` for ``img``, and an
adversarial ``x`` quantised to uint8 and saved as PNG is exactly what the service will see.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

QWEN_PATCH_MODELS = frozenset({"qwen2_vl", "qwen2_5_vl"})


class PixelMap:
    """Maps [0, 1] images ``x`` ``[B, 3, H, W]`` to a model's ``pixel_values``, differentiably."""

    def __init__(self, processor: Any, model_type: str):
        ip = getattr(processor, "image_processor", None)
        if ip is None:
            raise ValueError(f"{model_type}: the processor has no image_processor")
        self.image_processor = ip
        self.model_type = model_type
        self.layout = "patches" if model_type in QWEN_PATCH_MODELS else "chw"
        scale = float(ip.rescale_factor) * 255.0 if getattr(ip, "do_rescale", True) else 255.0
        normalize = getattr(ip, "do_normalize", True)
        mean = np.asarray(ip.image_mean if normalize else [0.0], dtype=np.float64)
        std = np.asarray(ip.image_std if normalize else [1.0], dtype=np.float64)
        # pixel_values = (x·255·rescale − mean) / std = x·gain − shift, per channel
        self._gain = torch.as_tensor(scale / std, dtype=torch.float32).reshape(1, -1, 1, 1)
        self._shift = torch.as_tensor(mean / std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if self.layout == "patches":
            self.patch = int(ip.patch_size)
            self.temporal = int(ip.temporal_patch_size)
            self.merge = int(ip.merge_size)

    @classmethod
    def for_generator(cls, generator: Any) -> PixelMap:
        return cls(generator.processor, str(generator.model.config.model_type))

    def from_image(self, image: Image.Image) -> torch.Tensor:
        """``[1, 3, H, W]`` float32 in [0, 1]: ``image`` resized/cropped as the processor does.

        Refused (ValueError) where the processor would resize an ``H×W`` image again (Qwen's
        smart resize is not always a fixed point), since the attack's output is ``H×W``."""
        chw = self._resized(image)
        again = self._resized(to_image(chw / 255.0))
        if again.shape != chw.shape or not torch.equal(again, chw):
            raise ValueError(
                f"model type {self.model_type!r}: the processor maps this image to {tuple(chw.shape[1:])} but does "
                f"not keep an image of that size unchanged (it becomes {tuple(again.shape[1:])}), so an adversarial "
                "image would not survive re-processing; resize the input to a size the processor keeps"
            )
        return (chw / 255.0).unsqueeze(0)

    def _resized(self, image: Image.Image) -> torch.Tensor:
        """``[3, H, W]`` float32 in 0..255: the processor's output before rescaling/normalising."""
        raw = self.image_processor(
            images=[image.convert("RGB")], do_rescale=False, do_normalize=False, return_tensors="pt"
        )
        pv = raw["pixel_values"]
        if self.layout == "patches":
            _, gh, gw = (int(v) for v in raw["image_grid_thw"][0])
            chw = self._unpatchify(pv.float(), gh, gw)
        elif pv.dim() == 4 and pv.shape[0] == 1 and pv.shape[1] == 3:
            chw = pv[0].float()
        else:
            raise ValueError(
                f"model type {self.model_type!r}: pixel_values of shape {tuple(pv.shape)} is not a layout the "
                "attacks support (single-crop [B, C, H, W] or Qwen2/2.5-VL flattened patches)"
            )
        return chw

    def to_pixel_values(self, x: torch.Tensor) -> torch.Tensor:
        """The model's ``pixel_values`` for ``x`` ``[B, 3, H, W]`` in [0, 1] (differentiable)."""
        z = x * self._gain.to(x.device) - self._shift.to(x.device)
        return self._patchify(z) if self.layout == "patches" else z

    def _patchify(self, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = z.shape
        p, m, t = self.patch, self.merge, self.temporal
        gh, gw = h // p, w // p
        z = z.reshape(b, c, gh // m, m, p, gw // m, m, p)
        z = z.permute(0, 2, 5, 3, 6, 1, 4, 7)  # b, gh/m, gw/m, m, m, c, p, p
        z = z.unsqueeze(6).expand(*z.shape[:6], t, p, p)  # every frame of the temporal patch
        return z.reshape(b * gh * gw, c * t * p * p)

    def _unpatchify(self, pv: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
        p, m, t = self.patch, self.merge, self.temporal
        z = pv.reshape(gh // m, gw // m, m, m, 3, t, p, p)[:, :, :, :, :, 0]
        return z.permute(4, 0, 2, 5, 1, 3, 6).reshape(3, gh * p, gw * p)


def to_image(x: torch.Tensor) -> Image.Image:
    """A uint8 RGB image from ``x`` ``[3, H, W]`` (or ``[1, 3, H, W]``) already on the 1/255 grid."""
    arr = (x.detach().reshape(-1, *x.shape[-2:]) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).cpu().numpy())
