"""The image processor saved beside a GenDD student, so that `pipeline("image-classification")` works."""

from timm.data import resolve_data_config
from transformers import ViTImageProcessor

from .modeling_gendd import GenDDForImageClassification


def build_image_processor(
    model: GenDDForImageClassification,
    image_size: int | tuple[int, int] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> ViTImageProcessor:
    """Resize + rescale + normalise as the student expects, from timm's data config of the student unless given.

    The processor always emits RGB (the pipeline converts images to RGB); a 1-channel student averages the
    channels, so a single mean/std is repeated over the three.
    """
    data_config = resolve_data_config({}, model=model.student)
    if image_size is None:
        image_size = data_config["input_size"][-2:]
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    mean = tuple(mean or data_config["mean"])
    std = tuple(std or data_config["std"])
    return ViTImageProcessor(
        do_resize=True,
        size={"height": height, "width": width},
        do_rescale=True,
        do_normalize=True,
        image_mean=list(mean * 3 if len(mean) == 1 else mean),
        image_std=list(std * 3 if len(std) == 1 else std),
    )


__all__ = ["build_image_processor"]
