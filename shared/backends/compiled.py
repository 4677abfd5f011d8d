"""Static-shape generation: a static KV cache and a ``torch.compile``'d decoding step.

With a ``StaticCache`` (``cache_implementation="static"``) transformers' ``generate`` runs every
decoding step through ``model.get_compiled_call`` — the prefill stays eager — on CUDA by itself,
elsewhere when the ``CompileConfig`` says ``_compile_all_devices`` (transformers 5.x; see
``GenerationMixin._valid_auto_compile_criteria``). The compiled step is specialised on the batch
size and the cache length, so:

- a batch is padded to the next **bucket** size by repeating its last example (its outputs are
  dropped): a handful of shapes. Dynamo compiles for the first, once more with the batch
  dimension dynamic at the second, and not again (``TORCH_LOGS=recompiles``); on CUDA
  (``reduce-overhead``) one CUDA graph is captured per size;
- the cache length is the longest prompt + ``max_new_tokens`` seen so far (transformers keeps the
  maximum, ``_previous_max_cache_length``): a longer request grows it once, after which dynamo
  treats that dimension as dynamic;
- ``warm_up`` runs one round per bucket at worker start, so no request pays the compile.

Greedy outputs equal eager ones (``tests/backends/test_compiled.py``): the padding rows are copies,
masked cache slots add nothing to the attention.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from transformers import CompileConfig

if TYPE_CHECKING:
    from shared.backends.registry import Runtime

BUCKETS_ATTR = "batch_buckets"  # on the model: the batch sizes generate_batch pads to; absent or (): no padding
# Qwen-VL's pixels are every example's patches concatenated; the grid says how many rows are whose
CONCATENATED = {"pixel_values": "image_grid_thw", "pixel_values_videos": "video_grid_thw"}
WARM_UP_PROMPT = "Describe the image in detail: the objects, their colours, their positions and the background."


def parse_buckets(text: str) -> tuple[int, ...]:
    """``"8,16,32"`` → ``(8, 16, 32)``, sorted, without duplicates."""
    return tuple(sorted({int(b) for b in text.split(",") if b.strip()}))


def buckets_up_to(buckets: tuple[int, ...], max_batch_size: int) -> tuple[int, ...]:
    """The buckets a generator uses: those below ``max_batch_size``, then ``max_batch_size`` itself
    (the largest batch it builds: padding it further would only waste work)."""
    return (*(b for b in buckets if 0 < b < max_batch_size), max_batch_size)


def compile_buckets(compile_generator: bool, batch_buckets: str, max_batch_size: int) -> tuple[int, ...]:
    """The settings' buckets when compiling, else ``()`` (eager generation, no padding)."""
    return buckets_up_to(parse_buckets(batch_buckets), max_batch_size) if compile_generator else ()


def enable(model: Any, buckets: tuple[int, ...]) -> None:
    """Static cache and compiled decoding for every later ``generate`` of ``model``; batches padded
    to ``buckets`` by ``generate_batch``."""
    model.generation_config.cache_implementation = "static"
    model.generation_config.compile_config = compile_config(model.device)
    setattr(model, BUCKETS_ATTR, buckets)


def compile_config(device: torch.device) -> CompileConfig:
    """transformers' default on CUDA (inductor, ``reduce-overhead``: CUDA graphs); elsewhere plain
    inductor, which transformers only uses when told to compile on every device."""
    if device.type == "cuda":
        return CompileConfig()
    config = CompileConfig(mode="default")
    config._compile_all_devices = True  # type: ignore[assignment]  # declared None, read as a flag
    return config


def bucket_for(rows: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket that holds ``rows``; ``rows`` itself when none does."""
    return next((b for b in buckets if b >= rows), rows)


def pad_batch(batch: dict[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
    """``batch`` with its last example repeated until it has ``size`` examples; the batch itself
    when it has that many already or a tensor's layout is not known (batch-first, or Qwen-VL's
    concatenated patches with one grid row per example)."""
    rows = batch["input_ids"].shape[0]
    extra = size - rows
    if extra <= 0 or not all(_last_example(k, batch, rows) is not None for k in batch):
        return batch
    padded = {}
    for key, value in batch.items():
        last = _last_example(key, batch, rows)
        assert last is not None
        padded[key] = torch.cat([value, last.repeat(extra, *([1] * (last.dim() - 1)))])
    return padded


def _last_example(key: str, batch: dict[str, torch.Tensor], rows: int) -> torch.Tensor | None:
    """The rows of ``batch[key]`` that belong to the last example, or None when that is unclear."""
    value = batch[key]
    grid = batch.get(CONCATENATED.get(key, ""))
    if grid is not None:
        return value[-int(grid[-1].prod()) :] if grid.shape[0] == rows else None
    return value[-1:] if value.dim() > 0 and value.shape[0] == rows else None


def warm_up(settings: Runtime) -> tuple[int, ...]:
    """With ``compile_generator``: the default model loaded and one round generated per bucket up
    to ``max_batch_size`` (``SmoothConfig``'s default length), so each shape is compiled before the
    worker takes a request; the batch sizes warmed up. Minutes on a 7B model; nothing (``()``)
    without the setting."""
    if not settings.compile_generator:
        return ()
    from shared.backends.registry import load_generator
    from shared.smoothing.noise import plan_round
    from shared.smoothing.types import SmoothConfig

    generator = load_generator(settings=settings)
    media = warm_up_media(generator.modality)
    sizes = compile_buckets(True, settings.batch_buckets, settings.max_batch_size)
    for size in sizes:
        config = SmoothConfig(num_samples=size, include_clean=False, noise_space=generator.noise_spaces[0])
        generator.generate(media, WARM_UP_PROMPT, plan_round(config, 0), max_new_tokens=config.max_new_tokens)
    return sizes


def warm_up_media(modality: str) -> Any:
    """A grey 336-px image, or a second of quiet noise at 16 kHz."""
    if modality == "audio":
        from shared.media.decode import Waveform

        samples = np.random.default_rng(0).normal(0, 0.01, 16000).astype(np.float32)
        return Waveform(samples, 16000)
    return Image.new("RGB", (336, 336), (128, 128, 128))
