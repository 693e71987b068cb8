"""The image processor of a GenDD student: transformers' `TimmWrapperImageProcessor` on the run's timm data config.

The config lives in the model's `config.json` (`GenDDConfig.pretrained_cfg`), so every folder that
`save_pretrained` writes (Trainer checkpoints, recipes, the benchmark, Hub pushes) carries it, and
`AutoImageProcessor` / `pipeline("image-classification")` apply timm's evaluation transform (resize, centre crop at
`crop_pct`, normalise) exactly as the recipes evaluate.
"""

from transformers import TimmWrapperImageProcessor


def build_image_processor(model) -> TimmWrapperImageProcessor:
    """The processor of `model` (a GenDD student), from `model.config.pretrained_cfg`. It emits RGB tensors, as the
    pipeline converts images to RGB; a 1-channel student reads them through the mean of the channels."""
    return TimmWrapperImageProcessor(pretrained_cfg=dict(model.config.pretrained_cfg))


__all__ = ["build_image_processor"]
