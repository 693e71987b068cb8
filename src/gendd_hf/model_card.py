"""Hub model cards (README.md) for GenDD students, rendered from a Jinja2 template with `huggingface_hub.ModelCard`."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .configuration_gendd import INFERENCE_PATHS, GenDDSamplingConfig, official_sampling_name
from .losses import METHODS, UNSUPERVISED_METHODS


DEFAULT_TEMPLATE_PATH = Path(__file__).resolve().parent / "templates" / "gendd_student.md"
TAGS = ["gendd", "knowledge-distillation", "image-classification", "timm"]
PATH_DESCRIPTIONS = {
    "sampled": "frozen teacher classifier on features sampled by the diffusion head",
    "probe": "the student's linear probe (one forward pass, no sampling)",
}
LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*")
RECORDED_FIELDS_KEY = "gendd_card"
"""Key of the card's YAML metadata that records every `ModelCardInfo` field of the card, so that a later push of the
model renders the same card ([`recorded_card_fields`])."""


def check_license(license: str | None) -> None:
    """Raise a `ValueError` saying what to pass unless `license` is `None` or has the form of a Hub licence id."""
    if license is not None and not LICENSE_ID.fullmatch(license):
        raise ValueError(
            f"license={license!r} is not a Hub licence identifier: use one such as 'apache-2.0', 'mit', 'cc-by-4.0' "
            "or 'other' (https://huggingface.co/docs/hub/repositories-licenses), or leave it unset to state no "
            "licence."
        )


def hub_dataset_id(name: str | None) -> str | None:
    """`name` if it can name a Hub dataset (a valid repo id that is not a local path), else `None`."""
    if not name or os.path.exists(name):
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def _dataset_markdown(name: str, pretty: str | None = None) -> str:
    """A Hub dataset as a link to its page; anything else (a local path, a description) as plain text, never a link.
    A local path is shortened to its last component."""
    if hub_dataset_id(name):
        return f"[{pretty or name}](https://huggingface.co/datasets/{name})"
    if os.path.exists(name):
        return f"`{Path(name).resolve().name}` (local files, not on the Hub)"
    return pretty or name


def describe_teacher(name: str, weights: str | None) -> str:
    """The teacher for the model card: its timm name and where its weights came from (`TimmTeacher.name` and
    `TimmTeacher.weights`: `"hf-hub:<repo id>"`, a URL, or a local file or folder, shown by its last component only,
    not linked)."""
    if weights is None:
        return f"timm `{name}` (weights not recorded)"
    if weights.startswith("hf-hub:"):
        repo_id = weights.removeprefix("hf-hub:")
        return f"timm `{name}`, pretrained weights [{repo_id}](https://huggingface.co/{repo_id})"
    if weights.startswith(("https://", "http://")):
        return f"timm `{name}`, pretrained weights from <{weights}>"
    kind = "folder" if os.path.isdir(weights) else "file"
    return f"timm `{name}`, weights from the local {kind} `{Path(weights).resolve().name}` (not on the Hub)"


@dataclass
class ModelCardInfo:
    """What a GenDD student's model card reports. Accuracies are fractions, as returned by `top_k_accuracy`.

    Args:
        model_name (`str`): name of the model, used as the card title and in `model-index`.
        teacher (`str`): the teacher and the source of its weights (Markdown), e.g. from [`describe_teacher`].
        student (`str`): timm architecture of the student backbone (`config.student_name`).
        dataset (`str`): the training data: a Hub dataset id (e.g. `"zalando-datasets/fashion_mnist"`: linked and
            listed in the `datasets` metadata) or anything else, such as a local path or a description (shown as
            text, a local path by its last component only, never linked).
        dataset_name (`str`, *optional*): pretty name of the training data; defaults to `dataset`.
        train_split (`str`, *optional*): split of `dataset` trained on.
        streaming (`bool`, *optional*, defaults to `False`): whether the training data was streamed.
        eval_dataset (`str`, *optional*): the evaluation data, as `dataset`; defaults to `dataset`.
        eval_dataset_name (`str`, *optional*): pretty name of the evaluation data; defaults to `eval_dataset`.
        eval_split (`str`, *optional*, defaults to `"test"`): split the accuracies were measured on; `None` when
            the model was not evaluated.
        repo_id (`str`, *optional*): Hub repository of this model, used in the loading example.
        base_model (`str`, *optional*): Hub id the student was initialised from, written to `base_model`; leave
            `None` for a student trained from scratch.
        license (`str`, *optional*): Hub licence identifier (`"apache-2.0"`, `"mit"`, `"cc-by-4.0"`, `"other"`...,
            see https://huggingface.co/docs/hub/repositories-licenses). `None` (the default) states no licence.
        tags (`list[str]`, *optional*): tags added to the GenDD ones.
        method (`str`, *optional*, defaults to `"gendd"`): the training method (`GenDDTrainingArguments.method`);
            a baseline (`ce`, `kd`, `dkd`, `kl_unsup`) classifies with the probe only.
        contraction (`float`, *optional*, defaults to 0.9): `lambda` of distribution contraction.
        token_dim (`int`, *optional*, defaults to 64): token size `k` of split tokenization.
        sampler (`str`, *optional*, defaults to `"ddpm"`): sampler of the measured sampled path.
        num_inference_steps (`int`, *optional*, defaults to 64): sampling steps of the measured sampled path.
        guidance_scale (`float`, *optional*, defaults to 2.0): classifier-free guidance scale used.
        num_samples (`int`, *optional*, defaults to 5): feature samples averaged per image.
        seed (`int`, *optional*, defaults to 0): `sampling_config.seed`, the seed of every image's sampling noise.
        inference_path (`str`, *optional*, defaults to `"sampled"`): what `forward` returns in eval mode.
        sampled_accuracy (`dict`, *optional*): `{"top1": ..., "top5": ...}` of the sampled path.
        probe_accuracy (`dict`, *optional*): `{"top1": ..., "top5": ...}` of the linear probe.
        epochs (`float`, *optional*): training epochs, for a run given in epochs.
        steps (`int`, *optional*): optimizer steps, for a run given in steps (`max_steps`); shown instead of epochs.
        stage1_epochs (`int`, *optional*): epochs of the cross-entropy warm-start stage, if any.
        learning_rate (`float`, *optional*): peak learning rate.
        batch_size (`int`, *optional*): total training batch size.
        optimizer (`str`, *optional*, defaults to `"AdamW"`): optimizer.
        lr_scheduler (`str`, *optional*, defaults to `"cosine"`): learning-rate schedule.
        notes (`str`, *optional*): free Markdown appended to the training section (hardware, deviations...).
        inference_costs (`list[dict]`, *optional*): accuracy against cost of inference settings, rows as
            `gendd_hf.bench.fast_sampling.evaluate_settings` returns them (`setting`, `head_evaluations_per_image`,
            `top1` in %, `images_per_second`).
        inference_costs_note (`str`, *optional*): where and how `inference_costs` were measured.
        temperatures (`dict`, *optional*): the temperature of each inference path (`config.temperatures`), which
            `forward` and the pipeline divide its logits by; `None` or empty: none fitted (1.0).
    """

    model_name: str
    teacher: str
    student: str
    dataset: str
    dataset_name: str | None = None
    train_split: str | None = None
    streaming: bool = False
    eval_dataset: str | None = None
    eval_dataset_name: str | None = None
    eval_split: str | None = "test"
    repo_id: str | None = None
    base_model: str | None = None
    license: str | None = None
    tags: list[str] | None = None
    method: str = "gendd"
    contraction: float = 0.9
    token_dim: int = 64
    sampler: str = "ddpm"
    num_inference_steps: int = 64
    guidance_scale: float = 2.0
    num_samples: int = 5
    seed: int = 0
    inference_path: str = "sampled"
    sampled_accuracy: dict[str, float] | None = None
    probe_accuracy: dict[str, float] | None = None
    epochs: float | None = None
    steps: int | None = None
    stage1_epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    optimizer: str = "AdamW"
    lr_scheduler: str = "cosine"
    notes: str | None = None
    inference_costs: list[dict] | None = None
    inference_costs_note: str | None = None
    temperatures: dict[str, float] | None = None

    def __post_init__(self):
        for field in ("model_name", "teacher", "student", "dataset"):
            if not getattr(self, field):
                raise ValueError(f"ModelCardInfo.{field} is empty; the card needs it.")
        check_license(self.license)
        if self.method not in METHODS:
            raise ValueError(f"ModelCardInfo.method={self.method!r}; use one of {list(METHODS)}.")
        if not 0.0 <= self.contraction <= 1.0:
            raise ValueError(f"ModelCardInfo.contraction={self.contraction} must lie in [0, 1] (0.9 in the paper).")
        if self.inference_path not in INFERENCE_PATHS:
            raise ValueError(
                f"ModelCardInfo.inference_path={self.inference_path!r}; use one of {list(INFERENCE_PATHS)}."
            )
        for field in ("sampled_accuracy", "probe_accuracy"):
            for key, value in (getattr(self, field) or {}).items():
                if key not in ("top1", "top5"):
                    raise ValueError(f"ModelCardInfo.{field} has key {key!r}; use 'top1' and 'top5'.")
                if not 0.0 <= value <= 1.0:
                    raise ValueError(
                        f"ModelCardInfo.{field}[{key!r}]={value} is not a fraction in [0, 1]; pass accuracies as "
                        "returned by top_k_accuracy (divide percentages by 100)."
                    )

    @property
    def official_sampling(self) -> str | None:
        """Which official setting the sampled path uses (`OFFICIAL_SAMPLING`), e.g. the CIFAR one; `None` if
        neither."""
        keys = ("sampler", "num_inference_steps", "guidance_scale", "num_samples")
        return official_sampling_name(GenDDSamplingConfig(**{key: getattr(self, key) for key in keys}))

    @classmethod
    def from_model(cls, model, **fields) -> ModelCardInfo:
        """Fill the student, method and sampling fields from a GenDD model's `config` and `sampling_config`; `fields`
        give the rest and override."""
        config, sampling = model.config, model.sampling_config
        from_model = {
            "student": config.student_name,
            "contraction": config.contraction,
            "token_dim": config.token_dim,
            "sampler": sampling.sampler,
            "num_inference_steps": sampling.num_inference_steps,
            "guidance_scale": sampling.guidance_scale,
            "num_samples": sampling.num_samples,
            "seed": sampling.seed,
            "inference_path": config.inference_path,
            "temperatures": dict(config.temperatures) or None,
        }
        return cls(**{**from_model, **fields})


def _eval_data(info: ModelCardInfo) -> tuple[str, str | None]:
    """The evaluation data and its pretty name: `eval_dataset`, else the training data."""
    return (info.eval_dataset, info.eval_dataset_name) if info.eval_dataset else (info.dataset, info.dataset_name)


def _eval_results(info: ModelCardInfo) -> list[EvalResult]:
    """`model-index` entries of the accuracies; none for evaluation data that is not on the Hub, which has no id."""
    name, pretty = _eval_data(info)
    eval_dataset = hub_dataset_id(name)
    if eval_dataset is None or info.eval_split is None:
        return []
    results = []
    for path, accuracy in (("sampled", info.sampled_accuracy), ("probe", info.probe_accuracy)):
        for key, value in sorted((accuracy or {}).items()):
            k = int(key.removeprefix("top"))
            results.append(
                EvalResult(
                    task_type="image-classification",
                    dataset_type=eval_dataset,
                    dataset_name=pretty or eval_dataset,
                    dataset_split=info.eval_split,
                    metric_type="accuracy",
                    metric_name=f"Top-{k} accuracy, {path} path (%)",
                    metric_value=round(100 * value, 2),
                    metric_config=path,
                    metric_args={"k": k},
                )
            )
    return results


def _recorded_fields(info: ModelCardInfo) -> dict:
    """The fields of `info` as the card's metadata records them: a local dataset path as the card shows it (by its
    last component, as text), which renders the same and tells nothing of the machine."""
    fields = dataclasses.asdict(info)
    for field in ("dataset", "eval_dataset"):
        if fields[field] and os.path.exists(fields[field]):
            fields[field], fields[f"{field}_name"] = _dataset_markdown(fields[field]), None
    return fields


def render_model_card(info: ModelCardInfo | dict, template_path: str | Path | None = None) -> str:
    """Render the README.md of a GenDD student: YAML metadata (tags, Hub datasets, licence, `model-index`) and the
    card text.

    Args:
        info (`ModelCardInfo` or `dict`): what to report; a dict is passed to `ModelCardInfo(**info)`.
        template_path (`str` or `Path`, *optional*): Jinja2 template; defaults to `gendd_hf/templates/gendd_student.md`.

    Returns:
        `str`: the card, front matter included.
    """
    info = info if isinstance(info, ModelCardInfo) else ModelCardInfo(**info)
    template_path = Path(template_path or DEFAULT_TEMPLATE_PATH)
    if not template_path.is_file():
        raise FileNotFoundError(
            f"Model card template not found at {template_path}; pass template_path= (the default ships with "
            "gendd_hf, in gendd_hf/templates/)."
        )
    eval_results = _eval_results(info)
    datasets = [hub_dataset_id(name) for name in (info.dataset, info.eval_dataset)]
    datasets = list(dict.fromkeys(name for name in datasets if name))
    card_data = ModelCardData(
        model_name=info.model_name,
        library_name="transformers",
        pipeline_tag="image-classification",
        license=info.license,
        tags=TAGS + [tag for tag in info.tags or [] if tag not in TAGS],
        datasets=datasets or None,
        metrics=["accuracy"],
        base_model=info.base_model,
        eval_results=eval_results or None,
        **{RECORDED_FIELDS_KEY: _recorded_fields(info)},
    )
    results = [
        {
            "path": path,
            "description": PATH_DESCRIPTIONS[path],
            **{key: f"{100 * value:.2f}" for key, value in accuracy.items()},
        }
        for path, accuracy in (("sampled", info.sampled_accuracy), ("probe", info.probe_accuracy))
        if accuracy
    ]
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        info=dataclasses.asdict(info),
        official_sampling=info.official_sampling,
        results=results,
        train_data=_dataset_markdown(info.dataset, info.dataset_name),
        eval_data=_dataset_markdown(*_eval_data(info)),
        unsupervised=info.method in UNSUPERVISED_METHODS,
    )
    return card.content


def recorded_card_fields(card: str | None) -> dict | None:
    """The `ModelCardInfo` fields that a card rendered by [`render_model_card`] records in its metadata, for
    rendering it again (for another repository: replace `repo_id`); `None` for no card or a card written otherwise.
    Fields that this version of `ModelCardInfo` does not have are left out."""
    recorded = ModelCard(card).data.to_dict().get(RECORDED_FIELDS_KEY) if card else None
    if not isinstance(recorded, dict):
        return None
    names = {field.name for field in dataclasses.fields(ModelCardInfo)}
    return {name: value for name, value in recorded.items() if name in names}


def write_model_card(folder: str | Path, info: ModelCardInfo | dict, template_path: str | Path | None = None) -> Path:
    """Render the card and write it to `folder/README.md` (the file the Hub shows); returns its path."""
    path = Path(folder) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_model_card(info, template_path), encoding="utf-8")
    return path


__all__ = [
    "DEFAULT_TEMPLATE_PATH",
    "ModelCardInfo",
    "check_license",
    "describe_teacher",
    "RECORDED_FIELDS_KEY",
    "hub_dataset_id",
    "recorded_card_fields",
    "render_model_card",
    "write_model_card",
]
