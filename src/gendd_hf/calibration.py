"""Temperature scaling (Guo et al., 2017): one scalar per inference path, fitted after training on held-out labelled
images, that divides the path's logits so that their softmax means a probability. It never changes a top-1.

`fit_temperature` fits it on logits; `calibrate_model` runs a path of a [`GenDDForImageClassification`] over held-out
images, fits its temperature and stores it in `config.temperatures`, which `save_pretrained` saves, `forward` applies in
eval mode and `pipeline("image-classification")` therefore reports.
"""

import torch
import torch.nn.functional as F

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
    model: GenDDForImageClassification, pixel_values: torch.Tensor, labels: torch.Tensor, path: str, **sampling
) -> float:
    """Fit the temperature of inference path `path` (`"probe"` or `"sampled"`) on held-out images and store it in
    `model.config.temperatures[path]`; returns it. Use images the model was not trained on (e.g. a split held out of
    the training set): on its own training images a model looks more certain than it is."""
    temperature = fit_temperature(path_logits_of_images(model, pixel_values, path, **sampling), labels)
    model.config.temperatures = {**(model.config.temperatures or {}), path: temperature}
    return temperature


__all__ = ["calibrate_model", "fit_temperature", "path_logits_of_images"]
