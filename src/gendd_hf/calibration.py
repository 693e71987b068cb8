"""Temperature scaling (Guo et al., 2017): one scalar per inference path, fitted after training on held-out labelled
images, that divides the path's logits so that their softmax means a probability. It never changes a top-1.

`fit_temperature` fits it on logits; `calibrate_model` runs the paths of a [`GenDDForImageClassification`] over held-out
images, fits their temperatures and stores them in `config.temperatures`, which `save_pretrained` saves, `forward`
applies in eval mode and `pipeline("image-classification")` therefore reports. With `choose_path` it also picks the
path to serve on the same images (`choose_inference_path`): the sampled path costs `num_samples x
num_inference_steps` head evaluations per image, so it is kept only where it is measurably ahead of the one-pass probe.
From the command line, on a saved model:

    python -m gendd_hf.calibration outputs/my-model --dataset_name path/to/held-out-imagefolder --split validation \
        --choose_path
"""

import argparse
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from .configuration_gendd import INFERENCE_PATHS
from .data import build_transforms, load_eval_dataset
from .metrics.statistics import paired_bootstrap
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


def choose_inference_path(probe_logits, sampled_logits, labels, confidence: float = 0.95, seed: int = 0) -> dict:
    """The path to serve, from both paths' logits on the same held-out images: `"sampled"` only where its top-1
    accuracy is ahead of the probe's with the paired bootstrap interval (`paired_bootstrap`) wholly above zero,
    `"probe"` otherwise (level or behind, the one-pass probe gives as much for one forward pass).

    Returns:
        `{"path", "difference", "low", "high", "images"}`: the choice and the sampled-minus-probe accuracy difference
        (fractions) with its interval.
    """
    labels = torch.as_tensor(labels)
    sampled_correct = (torch.as_tensor(sampled_logits).argmax(-1) == labels).numpy()
    probe_correct = (torch.as_tensor(probe_logits).argmax(-1) == labels).numpy()
    interval = paired_bootstrap(sampled_correct, probe_correct, confidence=confidence, seed=seed)
    return {"path": "sampled" if interval["low"] > 0 else "probe", **interval}


def calibrate_model(
    model: GenDDForImageClassification,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    paths: Sequence[str] = INFERENCE_PATHS,
    choose_path: bool = False,
    **sampling,
) -> dict:
    """Fit the temperature of each inference path of `paths` on held-out images and store it in
    `model.config.temperatures` (saved by `save_pretrained`, applied by `forward`); with `choose_path`, also set
    `model.config.inference_path` to the path `choose_inference_path` picks on the same images.

    Args:
        model ([`GenDDForImageClassification`]): the trained model.
        batches (iterable of `(pixel_values, labels)`): held-out labelled images, as the model's evaluation transform
            gives them. Use images the model was not trained on (e.g. a split held out of the training set): on its
            own training images a model looks more certain than it is.
        paths (`Sequence[str]`, defaults to both): `"probe"` and/or `"sampled"`.
        choose_path (`bool`, *optional*, defaults to `False`): pick the path to serve (needs both paths).
        sampling: per-call sampling settings of the sampled path (as for `path_logits`), e.g. `seed`.

    Returns:
        `{"temperatures": {path: T}}`, and with `choose_path` `"inference_path"`: what `choose_inference_path` returned.
    """
    if choose_path and set(paths) != set(INFERENCE_PATHS):
        raise ValueError(f"choose_path compares both inference paths; give paths={list(INFERENCE_PATHS)}, not {paths}.")
    logits, labels = {path: [] for path in paths}, []
    for pixel_values, batch_labels in batches:
        labels.append(torch.as_tensor(batch_labels))
        for path in paths:
            logits[path].append(path_logits_of_images(model, pixel_values, path, **sampling))
    logits, labels = {path: torch.cat(chunks) for path, chunks in logits.items()}, torch.cat(labels)
    fitted = {path: fit_temperature(logits[path], labels) for path in paths}
    model.config.temperatures = {**model.config.temperatures, **fitted}
    result = {"temperatures": fitted}
    if choose_path:
        result["inference_path"] = choose_inference_path(logits["probe"], logits["sampled"], labels)
        model.config.inference_path = result["inference_path"]["path"]
    return result


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
    parser.add_argument(
        "--choose_path",
        action="store_true",
        help="also save the path to serve (config.inference_path): 'sampled' only if it is ahead of the probe on these "
        "images with a 95%% paired bootstrap interval above zero, else 'probe' (one forward pass)",
    )
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

    result = calibrate_model(model, batches(), args.paths, choose_path=args.choose_path)
    model.save_pretrained(args.output_dir or args.model)
    for path, temperature in result["temperatures"].items():
        print(f"{path}: temperature {temperature:.4f}")
    if args.choose_path:
        choice = {
            key: value * 100 if isinstance(value, float) else value for key, value in result["inference_path"].items()
        }
        print(
            f"path to serve: {choice['path']} (sampled - probe on {choice['images']} images: "
            f"{choice['difference']:+.2f} points, 95% CI {choice['low']:+.2f} to {choice['high']:+.2f})"
        )
    saved = "temperatures, inference_path" if args.choose_path else "temperatures"
    print(f"saved to {args.output_dir or args.model} (config.json: {saved})")
    return result


__all__ = ["calibrate_model", "choose_inference_path", "fit_temperature", "path_logits_of_images"]


if __name__ == "__main__":
    main()
