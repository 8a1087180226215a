"""Training augmentations from ``torchvision.transforms.v2``, drawn reproducibly.

A phase names its augmentations (``augment: [hflip, rrc, rotate]``); :func:`augmenter` turns them
into a function ``(batch, generator) -> batch`` that transforms every image on its own (v2
transforms applied to a batch would draw one crop for all of it). Random parameters come from a
torch RNG seeded from the given generator inside a forked RNG state, so an epoch's augmentations
depend on (seed, phase, epoch) only — resume stays exact — and the caller's global RNG is never
touched. Any augmentation makes the frozen prefix a non-fixed function of the input, so the engine
does not cache while one is on (and says so).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..registry import Registry

__all__ = ["AUGMENTATIONS", "augmenter", "resolution_augmenter", "resize_batch"]

#: augmentation name -> ``f(image_size) -> v2 transform`` (on one (C, H, W) tensor)
AUGMENTATIONS: Registry[Callable[[int], Callable[[torch.Tensor], torch.Tensor]]] = Registry("augmentation")


@AUGMENTATIONS.register("hflip")
def _hflip(size: int):
    """Horizontal flip with probability 0.5."""
    from torchvision.transforms import v2

    return v2.RandomHorizontalFlip(0.5)


@AUGMENTATIONS.register("vflip")
def _vflip(size: int):
    """Vertical flip with probability 0.5."""
    from torchvision.transforms import v2

    return v2.RandomVerticalFlip(0.5)


@AUGMENTATIONS.register("rrc")
def _rrc(size: int):
    """Random resized crop back to the input size (scale 0.8–1, aspect 3/4–4/3): TruncatedTL's random crop."""
    from torchvision.transforms import v2

    return v2.RandomResizedCrop(size, scale=(0.8, 1.0), antialias=True)


@AUGMENTATIONS.register("rotate")
def _rotate(size: int):
    """A small rotation, ±10 degrees (TruncatedTL's "slight rotation")."""
    from torchvision.transforms import v2

    return v2.RandomRotation(10)


def augmenter(names: tuple[str, ...] | list[str], image_size: int) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """A batch augmenter for ``names`` (applied in the given order), or ``None`` for no augmentation."""
    if not names:
        return None
    from torchvision.transforms import v2

    pipeline = v2.Compose([AUGMENTATIONS.get(n)(image_size) for n in names])

    def apply(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            return torch.stack([pipeline(img) for img in batch])

    return apply


def resolution_augmenter(resolution: tuple[int, int], names: tuple[str, ...] | list[str] = ()
                         ) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """BiT-HyperRule's training resolution (Kolesnikov et al., ``bit/train.py``): every image resized
    to ``resize``², randomly cropped to ``crop``², flipped horizontally with probability 0.5; then the
    augmentations ``names`` (``hflip`` is already there) at the crop size. Drawn as :func:`augmenter`."""
    from torchvision.transforms import v2

    resize, crop = resolution
    extra = [AUGMENTATIONS.get(n)(crop) for n in names if n != "hflip"]
    pipeline = v2.Compose([v2.Resize((resize, resize), antialias=True), v2.RandomCrop((crop, crop)),
                           v2.RandomHorizontalFlip(0.5), *extra])

    def apply(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            return torch.stack([pipeline(img) for img in batch])

    return apply


def resize_batch(batch: torch.Tensor, size: int | None) -> torch.Tensor:
    """``batch`` (N, C, H, W) resized to ``size``² (BiT's evaluation at the crop size); unchanged for ``None``
    or when it already has that size."""
    if size is None or tuple(batch.shape[-2:]) == (size, size):
        return batch
    from torchvision.transforms.v2 import functional as F

    return F.resize(batch, [size, size], antialias=True)
