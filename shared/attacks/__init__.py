"""Adversarial attacks inside the HF ecosystem: PGD and EOT-PGD on images and audio.

A pure library (no database, object store or queue): generators in, dataclasses out.
"""

from shared.attacks.audio import AudioAttackResult, attack_audio
from shared.attacks.config import AttackConfig
from shared.attacks.pgd import AttackResult, attack_images

__all__ = ["AttackConfig", "AttackResult", "AudioAttackResult", "attack_audio", "attack_images"]
