"""Temperature scaling (Guo et al., 2017): one scalar per inference path, fitted after training on held-out labelled
images, that divides the path's logits so that their softmax means a probability. It never changes a top-1.

`fit_temperature` fits it on logits; `calibrate_model` runs the paths of a [`GenDDForImageClassification`] over held-out
images, fits their temperatures and stores them in `config.temperatures`, which `save_pretrained` saves, `forward`
applies in eval mode and `pipeline("image-classification")` therefore reports. From the command line, on a saved model:

    python -m gendd_hf.calibration outputs/my-model --dataset_name path/to/held-out-imagefolder --split validation
"""

import argparse
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from .configuration_gendd import INFERENCE_PATHS
from .data import build_transforms, load_eval_dataset
from .modeling_gendd import GenDDForImageClassification
from .progress import progress_bar


def fit_temperature(logits, labels, max_iter: int = 200) -> float:
    """The temperature `T` that minimises the negative log-likelihood of `softmax(logits / T)`: L-BFGS on `log T`
    (which keeps `T` positive), from `T = 1`.

    Args:
        logits (tensor or array of shape `(N, C)`): held-out logits of one inference path.
        labels (tensor or array of shape `(N,)`): their true classes.
        max_iter (`int`, *optional*, defaults to 200): L-BFGS iterations.
    """
    logits = torch.as_tensor(logits, dtype=torch.float64)
    labels = torch.as_tensor(labels).long()
    log_temperature = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_temperature.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return float(log_temperature.detach().exp())


@torch.no_grad()
def path_logits_of_images(
    model: GenDDForImageClassification,
    pixel_values: torch.Tensor,
    path: str,
    batch_size: int = 500,
    show_progress: bool = False,
    return_sample_logits: bool = False,
    **sampling,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Raw (untempered) logits `(N, C)` of one inference path over images, in batches, in eval mode
    (`model.path_logits`, each image's sampling noise seeded from its pixels as in `forward`; `sampling` as for it,
    e.g. `seed`). With `return_sample_logits` (sampled path only), also
    the teacher classifier's logits of each feature sample, `(N, num_samples, C)`: the path's logits are their mean
    (the classifier is linear), so they come at no extra cost."""
    if return_sample_logits and path != "sampled":
        raise ValueError(f"return_sample_logits needs the 'sampled' path, not {path!r}.")
    model.eval()
    logits, sample_logits = [], []
    with progress_bar(total=len(pixel_values), desc=f"{path} path", unit="img", disable=not show_progress) as progress:
        for i in range(0, len(pixel_values), batch_size):
            batch = pixel_values[i : i + batch_size]
            features = model.extract_features(batch)
            if return_sample_logits:
                samples = model.sample_features(features, return_samples=True, pixel_values=batch, **sampling)
                logits.append(model.classify_features(samples.mean(dim=1)))
                sample_logits.append(model.classify_features(samples))
            else:
                logits.append(model.path_logits(features, path, pixel_values=batch, **sampling))
            progress.update(len(batch))
    if return_sample_logits:
        return torch.cat(logits), torch.cat(sample_logits)
    return torch.cat(logits)


def calibrate_model(
    model: GenDDForImageClassification,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    paths: Sequence[str] = ("probe", "sampled"),
    **sampling,
) -> dict[str, float]:
    """Fit the temperature of each inference path of `paths` on held-out images and store it in
    `model.config.temperatures` (saved by `save_pretrained`, applied by `forward`); returns them.

    Args:
        model ([`GenDDForImageClassification`]): the trained model.
        batches (iterable of `(pixel_values, labels)`): held-out labelled images, as the model's evaluation transform
            gives them. Use images the model was not trained on (e.g. a split held out of the training set): on its
            own training images a model looks more certain than it is.
        paths (`Sequence[str]`, defaults to both): `"probe"` and/or `"sampled"`.
        sampling: per-call sampling settings of the sampled path (as for `path_logits`), e.g. `seed`.
    """
    logits, labels = {path: [] for path in paths}, []
    for pixel_values, batch_labels in batches:
        labels.append(torch.as_tensor(batch_labels))
        for path in paths:
            logits[path].append(path_logits_of_images(model, pixel_values, path, **sampling))
    fitted = {path: fit_temperature(torch.cat(logits[path]), torch.cat(labels)) for path in paths}
    model.config.temperatures = {**model.config.temperatures, **fitted}
    return fitted


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        prog="python -m gendd_hf.calibration",
        description="Fit the temperature of each inference path of a saved GenDD model on held-out labelled images "
        "and save the model with it (config.json, `temperatures`).",
    )
    parser.add_argument("model", help="a GenDD model folder (save_pretrained, a training run's output_dir)")
    parser.add_argument(
        "--dataset_name",
        required=True,
        help="held-out labelled images: 'fashion_mnist', or what load_image_dataset reads (Hub id, imagefolder...)",
    )
    parser.add_argument("--split", default="validation", help="a split the model was not trained on")
    parser.add_argument("--num_images", type=int, default=None, help="its first N images (default: all)")
    parser.add_argument("--paths", nargs="+", default=list(INFERENCE_PATHS), choices=INFERENCE_PATHS)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--output_dir", default=None, help="where to save the calibrated model (default: in place)")
    args = parser.parse_args(argv)

    model = GenDDForImageClassification.from_pretrained(args.model)
    rows = load_eval_dataset(args.dataset_name, args.split, args.num_images)
    transform = build_transforms(model.config.pretrained_cfg, is_training=False)

    def batches():
        for start in range(0, len(rows), args.batch_size):
            chunk = rows[start : start + args.batch_size]
            yield torch.stack([transform(image) for image in chunk["image"]]), torch.tensor(chunk["label"])

    fitted = calibrate_model(model, batches(), args.paths)
    model.save_pretrained(args.output_dir or args.model)
    for path, temperature in fitted.items():
        print(f"{path}: temperature {temperature:.4f}")
    print(f"saved to {args.output_dir or args.model} (config.json: temperatures)")
    return fitted


__all__ = ["calibrate_model", "fit_temperature", "path_logits_of_images"]


if __name__ == "__main__":
    main()
