"""Constants shared across layers; imports nothing (cheap for the CLI's start-up).

``IMAGENET_MEAN``/``IMAGENET_STD``: the usual torchvision/timm ImageNet normalisation, the
default where a backbone's own pretrained config gives none.
"""

IMAGENET_MEAN: tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, ...] = (0.229, 0.224, 0.225)
