"""GenDD as a transformers model: a timm student, a diffusion head over teacher-feature tokens, the frozen
teacher classifier and the student's linear probe.

Self-contained for ``trust_remote_code``: imports torch, timm, transformers, diffusers and its siblings only.
"""

import json
import tempfile
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, TimmWrapperConfig, TimmWrapperForImageClassification
from transformers.utils import SAFE_WEIGHTS_NAME, ModelOutput, cached_file, hf_api, logging

from .configuration_gendd import PROJECTION_PATH, GenDDConfig, GenDDSamplingConfig
from .diffusion import HybridDiffusionLoss, contract, merge_tokens, split_tokens, training_betas
from .diffusion_head import DiffusionHead
from .sampling import content_seeds, estimate_mean_tokens, image_generators, make_scheduler, sample_tokens


logger = logging.get_logger(__name__)

WEIGHT_BARS = ("Loading weights", "Writing model shards")
"""transformers' progress bars of `from_pretrained` and `save_pretrained`, which GenDD models load and save without."""


@contextmanager
def without_weight_bars():
    """transformers' `WEIGHT_BARS` off (a GenDD model loads and saves in about a second: a bar at each load is noise);
    download bars and every other bar stay as they are."""

    def hook(factory, args, kwargs):
        if kwargs.get("desc") in WEIGHT_BARS:
            return logging.EmptyTqdm(*args, **kwargs)
        return previous(factory, args, kwargs) if previous else factory(*args, **kwargs)

    previous = logging.set_tqdm_hook(hook)
    try:
        yield
    finally:
        logging.set_tqdm_hook(previous)


AUTO_MAP = {
    "AutoConfig": "configuration_gendd.GenDDConfig",
    "AutoModel": "modeling_gendd.GenDDForImageClassification",
    "AutoModelForImageClassification": "modeling_gendd.GenDDForImageClassification",
}


@dataclass
class GenDDImageClassifierOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            `diffusion_loss + probe_loss`, returned when `teacher_features` are given.
        diffusion_loss (`torch.FloatTensor` of shape `()`, *optional*):
            The hybrid denoising loss on contracted teacher-feature tokens.
        probe_loss (`torch.FloatTensor` of shape `()`, *optional*):
            Cross-entropy of the linear probe on the detached student feature.
        logits (`torch.FloatTensor` of shape `(B, num_labels)`):
            In eval mode, the chosen inference path's logits divided by its temperature (`config.temperatures`,
            1.0 unless fitted); in training, the probe's.
        probe_logits (`torch.FloatTensor` of shape `(B, num_labels)`):
            The linear probe's logits.
        student_features (`torch.FloatTensor` of shape `(B, d_s)`):
            The student's pooled penultimate feature `z`.
    """

    loss: torch.FloatTensor | None = None
    diffusion_loss: torch.FloatTensor | None = None
    probe_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    probe_logits: torch.FloatTensor | None = None
    student_features: torch.FloatTensor | None = None


class GenDDPreTrainedModel(PreTrainedModel):
    config_class = GenDDConfig
    base_model_prefix = "gendd"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    accepts_loss_kwargs = False
    model_card: str | None = None
    """The `README.md` of the folder or Hub repository the model was loaded from: `push_to_hub` keeps it."""

    @torch.no_grad()
    def _init_weights(self, module):
        # The timm student initialises itself; the head keeps MAR's scheme; the probe is a default Linear.
        if isinstance(module, DiffusionHead):
            module.reset_parameters()
        elif isinstance(module, nn.Linear) and module is getattr(self, "probe", None):
            module.reset_parameters()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save weights (safetensors), config (with the image processor's `pretrained_cfg`), the sampling config
        (`sampling_config.json`) and, for `trust_remote_code`, the modeling code with an `auto_map` naming AutoConfig,
        AutoModel and AutoModelForImageClassification."""
        self.config.auto_map = dict(AUTO_MAP)
        with without_weight_bars():
            result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            self.sampling_config.save_pretrained(save_directory)
        return result

    def push_to_hub(
        self,
        repo_id: str,
        *,
        model_card: Mapping | None = None,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: bool | str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str | None = "50GB",
        tags: list[str] | None = None,
    ):
        """Upload the model as `save_pretrained` saves it (weights; `config.json` with the image processor, which
        transformers keeps there for timm models: `image_processor_type` and the evaluation transform
        `pretrained_cfg`; `sampling_config.json`; the modeling code) with the GenDD model card, in one commit, so that
        `pipeline("image-classification", model=repo_id)` loads the repository and classifies as the model was
        evaluated.

        Args:
            repo_id (`str`): `"name"` (under the token's user) or `"namespace/name"`; created if needed.
            model_card (`dict`, *optional*): fields of `gendd_hf.model_card.ModelCardInfo` that the model cannot
                know: `teacher`, `dataset`, `eval_split`, accuracies, `license`... (the student and sampling settings
                come from the model). Without it, a model loaded from a folder or repository with a card pushes that
                card (`model_card`: its teacher, data, training, results and metadata, with `repo_id` in its loading
                example); otherwise the repository's existing `README.md` is kept, and a repository without one gets
                a GenDD card whose teacher and data read "not recorded".
            tags (`list[str]`, *optional*): tags added to the GenDD card's.
            commit_message, commit_description, private, token, revision, create_pr, max_shard_size:
                As in `PreTrainedModel.push_to_hub`.

        Returns:
            `huggingface_hub.CommitInfo` of the upload.
        """
        if self.config.pretrained_cfg is None:
            raise ValueError(
                "config.pretrained_cfg is None: the repository would have no evaluation transform, and its image "
                "processor (pipeline(), AutoImageProcessor) would fall back to timm's generic defaults. Set "
                "model.config.pretrained_cfg to the timm data config the model was evaluated with (the recipes set "
                "it; e.g. timm.data.resolve_model_data_config(teacher)) before pushing."
            )
        api = hf_api()
        repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, max_shard_size=max_shard_size)
            if (
                model_card is not None
                or self.model_card is not None
                or not api.file_exists(repo_id, "README.md", revision=revision, token=token)
            ):
                self._write_model_card(folder, repo_id, model_card, tags)
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=commit_message or "Upload GenDD model",
                commit_description=commit_description,
                token=token,
                revision=revision,
                create_pr=create_pr,
            )

    def _write_model_card(self, folder, repo_id: str, model_card: Mapping | None, tags: list[str] | None) -> None:
        """`folder/README.md`: the card of `model_card`'s fields, else the card the model was loaded with (rendered
        again for `repo_id`, or as it is when it records no fields), else a card whose teacher and data are not
        recorded."""
        try:  # gendd_hf's card; imported here so that this file stays self-contained for trust_remote_code
            from gendd_hf.model_card import ModelCardInfo, recorded_card_fields, write_model_card
        except ImportError:
            ModelCardInfo = recorded_card_fields = write_model_card = None
        if model_card is None and self.model_card is not None:
            fields = recorded_card_fields(self.model_card) if recorded_card_fields else None
            if fields is None:  # a card that records no fields, or no gendd-hf to render one: pushed as it is
                Path(folder, "README.md").write_text(self.model_card, encoding="utf-8")
                return
            info = ModelCardInfo(**{**fields, "repo_id": repo_id})
        elif ModelCardInfo is None:
            logger.warning("gendd-hf is not installed: pushing without a model card (pip install gendd-hf writes it).")
            return
        else:
            defaults = {
                "model_name": repo_id.split("/")[-1],
                "repo_id": repo_id,
                "teacher": "not recorded",
                "dataset": "not recorded",
                "eval_split": None,
            }
            info = ModelCardInfo.from_model(self, **{**defaults, **(model_card or {})})
        if tags:
            info.tags = list(dict.fromkeys([*(info.tags or []), *tags]))
        write_model_card(folder, info)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, sampling_config=None, **kwargs):
        """`PreTrainedModel.from_pretrained`, with the folder's `sampling_config.json` as the model's
        `sampling_config` (the defaults when it has none) and its `README.md` as the model's `model_card`, which
        `push_to_hub` keeps. `sampling_config` (a `GenDDSamplingConfig` or a dict of its fields, e.g. from
        `pipeline(..., model_kwargs={"sampling_config": {...}})`) replaces fields of it.
        Weights that safetensors cannot read (a truncated download or copy), weights without a buffer the model
        needs (the teacher classifier, the target range, normalisation statistics) and a config without
        `pretrained_cfg` (the evaluation transform) are errors naming the folder and the fix."""
        hub_kwargs = {
            name: kwargs[name]
            for name in ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")
            if name in kwargs
        }
        with_loading_info = kwargs.pop("output_loading_info", False)
        config = kwargs.get("config")
        if not isinstance(config, PretrainedConfig):  # the folder's: the model's __init__ would fill it in
            config, _ = cls.config_class.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
        if (config.get("pretrained_cfg") if isinstance(config, dict) else config.pretrained_cfg) is None:
            raise ValueError(
                f"The config of {str(pretrained_model_name_or_path)!r} has no pretrained_cfg, the evaluation transform "
                "(input size, crop, mean and std) that the model was trained and scored with; without it, images "
                "would be preprocessed with the student's timm defaults, silently. Add it to config.json as the timm "
                'data config of the run, e.g. "pretrained_cfg": {"input_size": [3, 224, 224], "interpolation": '
                '"bicubic", "crop_pct": 0.875, "crop_mode": "center", "mean": [0.485, 0.456, 0.406], "std": [0.229, '
                "0.224, 0.225]} (recipes save it), or save the model again with model.config.pretrained_cfg set."
            )
        try:
            with without_weight_bars():
                model, loading_info = super().from_pretrained(
                    pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
                )
        except SafetensorError as error:  # its message names no file
            lookup = {**hub_kwargs, "force_download": False, "local_files_only": True}  # the file just read
            weights = cached_file(
                pretrained_model_name_or_path, SAFE_WEIGHTS_NAME, **lookup, _raise_exceptions_for_missing_entries=False
            )
            raise OSError(
                f"Cannot read the GenDD weights {weights or pretrained_model_name_or_path}: the safetensors file is "
                f"truncated or corrupt ({error}). Download it again (from_pretrained(..., force_download=True)) or "
                "save the model again."
            ) from error
        buffers = set(model.state_dict()) - {name for name, _ in model.named_parameters()}
        missing = sorted(buffers & set(loading_info["missing_keys"]))
        if missing:
            raise ValueError(
                f"The weights of {str(pretrained_model_name_or_path)!r} lack buffers the model needs: {missing}. "
                "Loaded, they would hold arbitrary values (the sampled path would answer NaN or noise). Save the "
                "trained model again (save_pretrained, or the Trainer's save_model), or restore these tensors into "
                "its model.safetensors."
            )
        saved = GenDDSamplingConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        model.sampling_config = saved or GenDDSamplingConfig.from_model_config(model.config)
        card = cached_file(
            pretrained_model_name_or_path, "README.md", **hub_kwargs, _raise_exceptions_for_missing_entries=False
        )
        model.model_card = None if card is None else Path(card).read_text(encoding="utf-8")
        if sampling_config is not None:
            overrides = (
                sampling_config.to_dict() if isinstance(sampling_config, GenDDSamplingConfig) else sampling_config
            )
            model.sampling_config = model.sampling_config.update(**overrides)
        return (model, loading_info) if with_loading_info else model


class GenDDForImageClassification(GenDDPreTrainedModel):
    """A GenDD student. `forward` trains it from teacher features; in eval mode it classifies.

    The inference path is chosen by `config.inference_path` (or the `inference_path` argument of `forward`):
    `"sampled"` runs the diffusion head (`generate_features`) and the frozen teacher classifier, `"probe"` runs
    the student's linear probe only.
    """

    def __init__(self, config: GenDDConfig):
        super().__init__(config)
        self.student = timm.create_model(config.student_name, pretrained=False, num_classes=0, **config.student_kwargs)
        student_dim = getattr(self.student, "head_hidden_size", None) or self.student.num_features
        self.head = DiffusionHead(
            token_dim=config.token_dim,
            condition_dim=student_dim,
            num_tokens=config.num_tokens,
            width=config.head_width,
            depth=config.head_depth,
            learn_sigma=config.learn_sigma,
        )
        self.probe = nn.Linear(student_dim, config.num_labels)
        # The frozen teacher classifier (W: class centres, b). Buffers: saved, loaded, never trained.
        self.register_buffer("teacher_weight", torch.zeros(config.num_labels, config.teacher_feature_dim))
        self.register_buffer("teacher_bias", torch.zeros(config.num_labels))
        # Per-coordinate range of the training targets, for `config.clamp_first_step`; empty until trained.
        self.register_buffer("target_min", torch.full((config.teacher_feature_dim,), float("inf")))
        self.register_buffer("target_max", torch.full((config.teacher_feature_dim,), float("-inf")))
        self.diffusion_loss = HybridDiffusionLoss(
            training_betas(config.noise_schedule, config.num_train_timesteps), learn_sigma=config.learn_sigma
        )
        if config.pretrained_cfg is None:  # the student's timm defaults; a recipe saves its own evaluation transform
            config.pretrained_cfg = json.loads(json.dumps(timm.data.resolve_data_config({}, model=self.student)))
        self.sampling_config = GenDDSamplingConfig.from_model_config(config)
        self.post_init()

    @property
    def student_feature_dim(self) -> int:
        return self.probe.in_features

    @torch.no_grad()
    def set_teacher_classifier(self, weight: torch.Tensor | nn.Linear, bias: torch.Tensor | None = None):
        """Copy the teacher's linear classifier (`nn.Linear` or `W (C, d_t)`, `b (C,)`) into the model."""
        if isinstance(weight, nn.Linear):
            weight, bias = weight.weight, weight.bias
        if bias is None:
            bias = torch.zeros(weight.shape[0])
        expected = tuple(self.teacher_weight.shape)
        if tuple(weight.shape) != expected or tuple(bias.shape) != expected[:1]:
            raise ValueError(
                f"The teacher classifier has weight {tuple(weight.shape)} and bias {tuple(bias.shape)}, but the "
                f"config expects {expected} (num_labels={expected[0]}, teacher_feature_dim={expected[1]}); "
                "build the GenDDConfig from the teacher's class count and feature width."
            )
        self.teacher_weight.copy_(weight)
        self.teacher_bias.copy_(bias)

    def classify_features(self, teacher_features: torch.Tensor) -> torch.Tensor:
        """The frozen teacher classifier: `f @ W.T + b`."""
        return F.linear(teacher_features, self.teacher_weight, self.teacher_bias)

    def path_logits(
        self,
        student_features: torch.Tensor,
        inference_path: str | None = None,
        generator: torch.Generator | None = None,
        **sampling,
    ) -> torch.Tensor:
        """Logits of one inference path from student features, the one place a path is chosen (model, trainer,
        bench): `"probe"`, the linear probe; `"sampled"`, sampled teacher features (`sample_features`, with
        `generator` and per-call `sampling` settings) through the frozen teacher classifier; `"projection"`, stage
        1's `classify_features(feature_projection(z))`. `None` is `config.inference_path`."""
        path = inference_path or self.config.inference_path
        if path == "probe":
            return self.probe(student_features)
        if path == "sampled":
            return self.classify_features(self.sample_features(student_features, generator=generator, **sampling))
        if path == PROJECTION_PATH and hasattr(self, "feature_projection"):
            return self.classify_features(self.feature_projection(student_features))
        raise ValueError(
            f"Unknown inference_path {path!r}; choose 'sampled' or 'probe' ('projection' after add_feature_projection)."
        )

    def temperature(self, inference_path: str | None = None) -> float:
        """The temperature that `forward` divides the logits of `inference_path` (default `config.inference_path`) by
        in eval mode: `config.temperatures[path]`, fitted by `gendd_hf.calibration.calibrate_model`, else 1.0."""
        return float(self.config.temperatures.get(inference_path or self.config.inference_path, 1.0))

    def add_feature_projection(self) -> nn.Module:
        """Add (once) and return `feature_projection`, GenDD's stage-1 map `d_s -> d_t`: a linear layer, or the
        identity when the widths are equal (`d_s == d_t`, e.g. ResNet34 -> ResNet18), as in the official code.

        Stage 1 trains the student so that `classify_features(feature_projection(z))` fits the labels before the
        diffusion stage (`GenDDTrainer` with `stage="pretrain"`). The projection is not part of the config: a
        stage-1 folder passes its student to stage 2 through `init_from`; loaded with `from_pretrained`, it is a
        GenDD model without the projection.
        """
        if not hasattr(self, "feature_projection"):
            if self.student_feature_dim == self.config.teacher_feature_dim:
                self.feature_projection = nn.Identity()
            else:
                self.feature_projection = nn.Linear(self.student_feature_dim, self.config.teacher_feature_dim)
                self.feature_projection.to(self.probe.weight.device)
        return self.feature_projection

    def extract_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The student's pooled penultimate feature `z` of shape `(B, d_s)`.

        A 1-channel student accepts 3-channel input (as the image-classification pipeline produces) through the mean
        of the channels, taken exactly (the first channel) when they are equal, as for a grayscale image converted
        to RGB; any other channel mismatch is an error.
        """
        channels, expected = pixel_values.shape[1], self.config.in_chans
        if channels != expected:
            if expected == 1 and channels == 3:
                first = pixel_values[:, :1]
                equal = torch.equal(first.expand_as(pixel_values), pixel_values)
                pixel_values = first if equal else pixel_values.mean(dim=1, keepdim=True)
            else:
                raise ValueError(
                    f"pixel_values have {channels} channels but the student {self.config.student_name!r} expects "
                    f"in_chans={expected}; convert the images (e.g. to RGB or L) or set "
                    f"student_kwargs={{'in_chans': {channels}}} in the GenDDConfig."
                )
        return self.student(pixel_values)

    @torch.no_grad()
    def sample_features(
        self,
        student_features: torch.Tensor,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
        sampler: str | None = None,
        seed: int | None = None,
        return_samples: bool = False,
        clamp_first_step: bool | None = None,
        pixel_values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample teacher-space features `(B, d_t)` given student features `z`, averaged over `num_samples`
        (`return_samples=True`: the samples themselves, `(B, num_samples, d_t)`, whose mean that is; one for `"mean"`).

        `None` arguments take the values of `self.sampling_config`. Without a `generator`, each image draws its noise
        from its own generator, seeded from `seed` and the image's content (`content_seeds` of `pixel_values`, or of
        `z` when the pixels are not given): draws are independent across images, and an image's features do not
        depend on its batch. With a generator, the batch's noise comes from it. With `sampler="mean"`, one guided head
        call estimates the conditional mean of the features instead (see `estimate_mean_tokens`);
        `num_inference_steps`, `num_samples` and the noise are then unused.
        """
        settings = self.sampling_config.update(
            sampler=sampler,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            num_samples=num_samples,
            seed=seed,
            clamp_first_step=clamp_first_step,
        )
        config = self.config
        for name in ("num_inference_steps", "mean_timestep"):
            if getattr(settings, name) >= config.num_train_timesteps + (name == "num_inference_steps"):
                raise ValueError(
                    f"sampling {name}={getattr(settings, name)} does not fit the training chain of "
                    f"num_train_timesteps={config.num_train_timesteps} steps; use a smaller value."
                )
        condition = self.head.embed_condition(self.head.condition_norm(student_features))
        null_condition = self.head.null_condition()
        if settings.sampler == "mean":
            alphas_cumprod = make_scheduler("ddpm", config.num_train_timesteps, config.noise_schedule).alphas_cumprod
            tokens = estimate_mean_tokens(
                self.head,
                condition,
                null_condition,
                alphas_cumprod,
                settings.mean_timestep,
                settings.guidance_scale,
                centre=self.target_centre(),
            )
        else:
            if generator is None:
                rows = student_features if pixel_values is None else pixel_values
                generator = image_generators(content_seeds(rows, settings.seed), student_features.device)
            tokens = sample_tokens(
                self.head,
                condition,
                null_condition,
                make_scheduler(settings.sampler, config.num_train_timesteps, config.noise_schedule, config.learn_sigma),
                num_inference_steps=settings.num_inference_steps,
                guidance_scale=settings.guidance_scale,
                num_samples=settings.num_samples,
                generator=generator,
                first_step_range=self.first_step_range(settings),
            )
        samples = merge_tokens(tokens)  # (B, num_samples, d_t); one sample for "mean"
        return samples if return_samples else samples.mean(dim=1)

    def first_step_range(self, settings: GenDDSamplingConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Token bounds `(n, k)` of the first sampling step's `x_0` (`settings.clamp_first_step`): the recorded range of
        the training targets, or `None` (no clamp) when it is off or nothing was recorded."""
        if not settings.clamp_first_step or not bool(torch.isfinite(self.target_min).all()):
            return None
        return tuple(split_tokens(bound, self.config.token_dim) for bound in (self.target_min, self.target_max))

    def target_centre(self) -> torch.Tensor:
        """Tokens `(n, k)` of the centre of the recorded training-target range (zeros before training)."""
        if not bool(torch.isfinite(self.target_min).all()):
            return self.target_min.new_zeros(self.config.num_tokens, self.config.token_dim)
        return split_tokens((self.target_min + self.target_max) / 2, self.config.token_dim)

    @torch.no_grad()
    def generate_features(
        self,
        pixel_values: torch.Tensor,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
        sampler: str | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Sample teacher-space features `(B, d_t)` for images; `None` arguments take the values of
        `self.sampling_config` (see `sample_features`). Pass the result to `classify_features` for logits."""
        return self.sample_features(
            self.extract_features(pixel_values),
            num_inference_steps,
            guidance_scale,
            num_samples,
            generator,
            sampler,
            seed,
            pixel_values=pixel_values,
        )

    @torch.no_grad()
    def to_timm_classifier(self, in_chans: int | None = None) -> nn.Module:
        """The student with its linear probe as the classifier of `timm.create_model(student_name,
        num_classes=num_labels, **student_kwargs)`, in eval mode on the CPU: the probe path as a plain timm network,
        the form in which a classifier trained with `method="ce"` is saved and that `export_student` wraps.

        The weights load with the strict key check: the classifier is the only layer that the student (built with
        `num_classes=0`) lacks, any other difference of layout is an error. `in_chans=3` builds a 1-channel student
        for RGB input, its first convolution's weight divided by 3 over each channel: the GenDD model's own channel
        averaging. The global random state is left as it was (the new network's initialisation is overwritten).
        """
        config = self.config
        timm_kwargs = {**config.student_kwargs, **({} if in_chans is None else {"in_chans": in_chans})}
        with torch.random.fork_rng(devices=[]):
            classifier = timm.create_model(
                config.student_name, pretrained=False, num_classes=config.num_labels, **timm_kwargs
            )
        state = dict(self.student.state_dict())
        if in_chans == 3 and config.in_chans == 1:
            first_conv = classifier.pretrained_cfg.get("first_conv")
            if not isinstance(first_conv, str):
                raise ValueError(
                    f"Cannot convert the 1-channel student {config.student_name!r} to 3 channels: its timm "
                    f"pretrained_cfg names no single first convolution (first_conv={first_conv!r}) to spread over them."
                )
            weight = state[f"{first_conv}.weight"]
            state[f"{first_conv}.weight"] = weight.repeat(1, 3, *[1] * (weight.dim() - 2)) / 3
        head = classifier.get_classifier()
        if not isinstance(head, nn.Linear):
            raise ValueError(
                f"Cannot convert {config.student_name!r}: its timm classifier is {type(head).__name__}, not the "
                "nn.Linear that receives the probe."
            )
        name = next(module_name for module_name, module in classifier.named_modules() if module is head)
        state.update({f"{name}.weight": self.probe.weight, f"{name}.bias": self.probe.bias})
        classifier.load_state_dict(state)  # strict: any other difference of layout is an error
        return classifier.eval()

    @torch.no_grad()
    def export_student(self, save_directory) -> TimmWrapperForImageClassification:
        """Save the student backbone with its linear probe as a plain transformers image classifier.

        The folder holds a `TimmWrapperForImageClassification` (`config.json` with the timm architecture, its
        `model_args` and the label names; `model.safetensors` with the timm model's keys under `timm_model.`), which
        `AutoModelForImageClassification.from_pretrained` loads without gendd_hf and without `trust_remote_code`.
        Its logits are those of the probe path (`inference_path="probe"`, one forward pass), so the accuracy that
        goes with it is the probe's, not the sampled path's. A 1-channel student is exported with 3 input channels,
        its first convolution's weight divided by 3 over each (`to_timm_classifier(in_chans=3)`): the GenDD model's
        own channel averaging, so that RGB images (as `pipeline("image-classification")` gives) work as they do on
        the GenDD model.

        Students from gendd_hf's CIFAR zoo (`cifar_*`) are known to timm only after `import gendd_hf`; loading
        their export needs that import first.

        The exported `config.json` keeps this model's `pretrained_cfg`, so `AutoImageProcessor` and
        `pipeline("image-classification")` preprocess the export as this model's evaluation did.

        Args:
            save_directory (`str` or `os.PathLike`): the folder to write.

        Returns:
            The exported `TimmWrapperForImageClassification`, in eval mode.
        """
        config = self.config
        model_args = {**config.student_kwargs, "in_chans": 3}
        exported = TimmWrapperForImageClassification(
            TimmWrapperConfig(
                architecture=config.student_name,
                model_args=model_args,
                id2label=dict(config.id2label),
                pretrained_cfg=dict(config.pretrained_cfg),
            )
        )
        exported.timm_model.load_state_dict(self.to_timm_classifier(in_chans=3).state_dict())
        exported.to(self.probe.weight.device).eval()
        exported.save_pretrained(save_directory)
        if not timm.models.model_entrypoint(config.student_name).__module__.startswith("timm."):
            logger.warning(
                f"{config.student_name!r} is not one of timm's own models: `import gendd_hf` (or the module that "
                f"registers it) before loading {str(save_directory)!r}."
            )
        return exported

    def compute_losses(
        self,
        student_features: torch.Tensor,
        probe_logits: torch.Tensor,
        teacher_features: torch.Tensor,
        labels: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(diffusion_loss, probe_loss)` for one batch.

        Labels may be hard `(B,)` or soft `(B, C)`; without labels the teacher's own softmax is the target of both
        the contraction and the probe (the unsupervised form).
        """
        config = self.config
        teacher_features = teacher_features.to(student_features.dtype)
        if labels is None:
            labels = self.classify_features(teacher_features).softmax(dim=-1)
        probe_loss = F.cross_entropy(probe_logits, labels)

        target = contract(teacher_features, labels, self.teacher_weight, config.contraction)
        if self.training:
            with torch.no_grad():
                torch.minimum(self.target_min, target.detach().amin(0), out=self.target_min)
                torch.maximum(self.target_max, target.detach().amax(0), out=self.target_max)
        # The reference's order: normalise the condition, then mix, then drop (so the null condition is Linear(0)).
        condition = self.head.condition_norm(student_features)
        if self.training and config.feature_mixup_beta > 0:
            # Feature mixup: one Beta(a, a) coefficient per batch mixes (LayerNorm(z), f_target) pairs.
            beta = torch.distributions.Beta(config.feature_mixup_beta, config.feature_mixup_beta)
            mix = beta.sample().to(condition.device)
            perm = torch.randperm(condition.shape[0], device=condition.device)
            condition = mix * condition + (1 - mix) * condition[perm]
            target = mix * target + (1 - mix) * target[perm]

        # Rows: (sample, token, repeat), each repeat with its own timestep and noise.
        x_start = split_tokens(target, config.token_dim).unsqueeze(2)
        x_start = x_start.expand(-1, -1, config.diffusion_batch_mul, -1)
        condition = self.head.embed_condition(condition).unsqueeze(2)
        if self.training and config.cond_drop_prob > 0:
            # Classifier-free guidance: each row's condition is dropped on its own, as in the reference.
            keep = torch.rand(x_start.shape[:-1], device=x_start.device).unsqueeze(-1) >= config.cond_drop_prob
            condition = torch.where(keep, condition, self.head.null_condition().unsqueeze(1))
        timesteps = torch.randint(0, config.num_train_timesteps, x_start.shape[:-1], device=x_start.device)
        noise = torch.randn_like(x_start)
        x_t = self.diffusion_loss.q_sample(x_start, timesteps, noise)
        output = self.head(x_t, timesteps, condition)
        diffusion_loss = self.diffusion_loss(output, x_start, x_t, timesteps, noise).mean()
        return diffusion_loss, probe_loss

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        teacher_features: torch.Tensor | None = None,
        inference_path: str | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool | None = None,
        return_loss: bool = True,
        **kwargs,
    ) -> GenDDImageClassifierOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.Tensor` of shape `(B, C, H, W)`): images.
            labels (`torch.Tensor`, *optional*): hard `(B,)` or soft `(B, C)` labels for the contraction and probe.
            teacher_features (`torch.Tensor` of shape `(B, d_t)`, *optional*): the teacher's pooled features of the
                same views; required in training, optional in eval (then the losses are computed too).
            inference_path (`str`, *optional*): `"sampled"` or `"probe"`, overriding `config.inference_path`.
            generator (`torch.Generator`, *optional*): noise source of the sampled path; without it each image's
                noise is seeded from `sampling_config.seed` and its pixels, so its logits do not depend on its batch.
            return_loss (`bool`, *optional*, defaults to `True`): `False` skips the GenDD losses (and the need for
                `teacher_features` in training), for objectives built on `student_features`, such as the baselines
                and stage 1 of `GenDDTrainer`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if self.training and return_loss and teacher_features is None:
            raise ValueError(
                "GenDD training needs `teacher_features` (B, d_t): run the teacher on the same views (GenDDTrainer "
                "does this) or stream stored teacher outputs."
            )
        student_features = self.extract_features(pixel_values)
        probe_logits = self.probe(student_features.detach())
        loss = diffusion_loss = probe_loss = None
        if return_loss and teacher_features is not None:
            diffusion_loss, probe_loss = self.compute_losses(student_features, probe_logits, teacher_features, labels)
            loss = diffusion_loss + probe_loss

        logits = probe_logits
        path = inference_path or self.config.inference_path
        if not self.training and path != "probe":
            logits = self.path_logits(student_features, path, generator=generator, pixel_values=pixel_values)
        if not self.training:
            logits = logits / self.temperature(path)

        output = GenDDImageClassifierOutput(
            loss=loss,
            diffusion_loss=diffusion_loss,
            probe_loss=probe_loss,
            logits=logits,
            probe_logits=probe_logits,
            student_features=student_features,
        )
        return output if return_dict else output.to_tuple()


__all__ = ["GenDDPreTrainedModel", "GenDDForImageClassification", "GenDDImageClassifierOutput"]
