"""`GenDDTrainer`: GenDD and the logit-distillation baselines in one `transformers.Trainer`, under Accelerate.

Every method trains the same model class, `GenDDForImageClassification`, on the same data and schedule, so one table
compares them. The student's linear `probe` is the classifier of the baselines; GenDD trains the diffusion head and
the (detached) probe together. A frozen timm teacher runs online under no_grad, unless the batch carries its
precomputed outputs.

A recipe is then a few lines::

    args = GenDDTrainingArguments(output_dir="out", method="gendd", learning_rate=2e-3, num_train_epochs=100,
                                  warmup_steps=0.05, eval_strategy="epoch", save_strategy="epoch")
    teacher = TimmTeacher.from_timm("resnet34.a1_in1k")
    config = GenDDConfig(student_name="resnet18", teacher_feature_dim=teacher.feature_dim,
                         num_labels=teacher.num_classes)
    trainer = GenDDTrainer(GenDDForImageClassification(config), args, teacher=teacher, train_dataset=train,
                           eval_dataset=val, data_collator=ImageCollator(transform))
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    metrics = trainer.evaluate()          # eval_sampled_top1, eval_sampled_top5, eval_probe_top1, eval_probe_top5
    trainer.save_model()
"""

import inspect
import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import torch
from datasets import ClassLabel
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers import ProgressCallback, Trainer
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import HubStrategy, SaveStrategy, get_last_checkpoint
from transformers.utils import SAFE_WEIGHTS_NAME, PushInProgress, logging

from .callbacks import AdamBeta2Callback, LogProgressCallback
from .configuration_gendd import INFERENCE_PATHS, PROJECTION_PATH
from .hub import HUB_CHECKPOINT, copy_model_files, download_checkpoint, upload_checkpoint, upload_model_folder
from .losses import GENDD_METHODS, UNSUPERVISED_METHODS, dkd_loss, kd_loss, soft_cross_entropy
from .metrics import top_k_metrics
from .model_card import ModelCardInfo, describe_teacher, recorded_card_fields, write_model_card
from .modeling_gendd import GenDDForImageClassification, GenDDImageClassifierOutput
from .one_pass import OnePassConfig, distil_probe
from .progress import is_terminal
from .schedules import epoch_scheduler
from .teacher import TimmTeacher
from .training_args import GenDDTrainingArguments


logger = logging.get_logger(__name__)

IGNORE_INDEX = -100
"""The label of an image without class (Hugging Face's ignore index): skipped by the cross-entropy of `ce`, `kd` and
stage 1 in training without mixup; an error anywhere else."""
LATEST_CHECKPOINT = ("true", "latest")
"""`resume_from_checkpoint` strings (any case) that mean the latest checkpoint of `output_dir`, as `True` does."""
HUB_RESUME = "hub"
"""`resume_from_checkpoint="hub"`: the `last-checkpoint/` folder of the run's Hub repository (`hub_model_id`), as
`hub_strategy="checkpoint"` pushes it; `"hub:checkpoint-N"` names another folder (`hub_strategy="all_checkpoints"`)."""


class NonFiniteLossError(FloatingPointError):
    """Raised by `GenDDTrainer` when a training loss is NaN or infinite, before any optimizer step uses it.

    The forward that produced it had already changed the model's buffers (BatchNorm statistics, GenDD's target range),
    so the trainer first copies back the buffers it kept from the start of the optimizer step: the model in memory is
    then the one a checkpoint written after the last optimizer step holds, and can be saved or evaluated.
    """


def as_teacher(teacher: TimmTeacher | nn.Module | str | None) -> TimmTeacher | None:
    """A `TimmTeacher` from a `TimmTeacher`, a timm model, or a timm model name (pretrained weights from the Hub)."""
    if teacher is None or isinstance(teacher, TimmTeacher):
        return teacher
    if isinstance(teacher, str):
        return TimmTeacher.from_timm(teacher)
    if isinstance(teacher, nn.Module):
        return TimmTeacher(teacher)
    raise TypeError(f"teacher must be a TimmTeacher, a timm model or a timm model name, got {type(teacher).__name__}.")


def check_teacher(config, teacher: TimmTeacher) -> None:
    """Raise a `ValueError` saying how to fix it when `teacher` does not fit the model `config`."""
    if teacher.num_classes != config.num_labels:
        raise ValueError(
            f"The teacher has {teacher.num_classes} classes but the model has num_labels={config.num_labels}; "
            f"build the GenDDConfig with num_labels={teacher.num_classes} (or the id2label of the teacher's classes) "
            "and train on data labelled with the teacher's classes."
        )
    if teacher.feature_dim != config.teacher_feature_dim:
        hint = f"set teacher_feature_dim={teacher.feature_dim} in the GenDDConfig"
        if teacher.feature_dim % config.token_dim:
            token_dim = next(k for k in (64, 32, 16, 8, 4, 2, 1) if teacher.feature_dim % k == 0)
            hint += (
                f" with a token_dim that divides it (token_dim={config.token_dim} does not divide "
                f"{teacher.feature_dim}; e.g. token_dim={token_dim})"
            )
        raise ValueError(
            f"The teacher's pooled feature has {teacher.feature_dim} dims but the model expects "
            f"teacher_feature_dim={config.teacher_feature_dim}: {hint}."
        )


def check_dataset_classes(dataset, num_labels: int, name: str) -> None:
    """Raise a `ValueError` when a dataset's `label` column is a `ClassLabel` with another class count."""
    datasets = dataset.values() if isinstance(dataset, dict) else [dataset]
    for data in datasets:
        label = (getattr(data, "features", None) or {}).get("label")
        if isinstance(label, ClassLabel) and label.num_classes != num_labels:
            raise ValueError(
                f"The {name} 'label' column has {label.num_classes} classes but the model and teacher have "
                f"num_labels={num_labels}; distil on data labelled with the teacher's classes (or use a teacher "
                f"trained on these {label.num_classes} classes)."
            )


def load_student_weights(model: GenDDForImageClassification, folder: str | os.PathLike) -> None:
    """Initialise `model.student` from the `student.*` weights of a GenDD folder's `model.safetensors`.

    The folder may be stage 1's output, a Trainer checkpoint or any saved GenDD model. Only safetensors are read.
    """
    path = Path(folder)
    if not path.exists():
        raise FileNotFoundError(
            f"init_from={str(folder)!r} does not exist; pass the output folder of stage 1 (stage='pretrain') or any "
            "folder saved by GenDDForImageClassification.save_pretrained."
        )
    weights = path / SAFE_WEIGHTS_NAME
    if not weights.is_file():
        raise ValueError(
            f"init_from={str(folder)!r} is not a GenDD model folder: it has no {SAFE_WEIGHTS_NAME} (only safetensors "
            "are loaded, never pickles). Pass the folder that save_pretrained or the Trainer wrote."
        )
    try:
        state_dict = load_file(weights)
    except SafetensorError as error:
        raise ValueError(f"init_from: {weights} is not a readable safetensors file ({error}).") from error
    prefix = "student."
    student = {name.removeprefix(prefix): value for name, value in state_dict.items() if name.startswith(prefix)}
    if not student:
        raise ValueError(f"init_from: {weights} has no 'student.*' weights; is it a GenDD model?")
    try:
        model.student.load_state_dict(student)
    except RuntimeError as error:
        raise ValueError(
            f"init_from: the student in {weights} does not fit student_name={model.config.student_name!r} with "
            f"student_kwargs={model.config.student_kwargs}: {error}"
        ) from error


def check_checkpoint(folder: str | os.PathLike) -> None:
    """Raise a clear error unless `folder` is a checkpoint written by the Trainer (`checkpoint-N`)."""
    path = Path(folder)
    if not path.exists():
        raise FileNotFoundError(
            f"resume_from_checkpoint={str(folder)!r} does not exist; pass a checkpoint-N folder of output_dir, or "
            "True (true or latest on the command line) to resume from the latest one."
        )
    missing = [name for name in (SAFE_WEIGHTS_NAME, TRAINER_STATE_NAME) if not (path / name).is_file()]
    if missing:
        raise ValueError(
            f"resume_from_checkpoint={str(folder)!r} is not a Trainer checkpoint: {', '.join(missing)} missing. "
            "Pass a checkpoint-N folder written during training (a saved model folder cannot be resumed; use "
            "init_from to start from its student)."
        )


def resolve_checkpoint(resume_from_checkpoint: str | os.PathLike | bool | None, output_dir: str | None) -> str | None:
    """The checkpoint folder that `resume_from_checkpoint` names, checked by [`check_checkpoint`]: the latest
    `checkpoint-N` of `output_dir` for `True` or one of the strings `LATEST_CHECKPOINT` (the command line passes
    strings only), else the folder given; `None` for `None` and `False`."""
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    latest = resume_from_checkpoint is True or (
        isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.lower() in LATEST_CHECKPOINT
    )
    if latest:
        folder = get_last_checkpoint(output_dir) if output_dir and os.path.isdir(output_dir) else None
        if folder is None:
            raise FileNotFoundError(
                f"resume_from_checkpoint={resume_from_checkpoint!r} resumes from the latest checkpoint-N folder of "
                f"output_dir={output_dir!r}, but it has none: start without resume_from_checkpoint, or pass the "
                "checkpoint folder itself."
            )
    else:
        folder = os.fspath(resume_from_checkpoint)
    check_checkpoint(folder)
    return folder


def parameter_groups(model: nn.Module, args: GenDDTrainingArguments) -> list[dict]:
    """AdamW groups of the trainable parameters, by the GenDD code's rule (`param_groups_setup`: a name containing
    "diffloss" or "ln"): `"head"` (`args.head_weight_decay`, 0 in GenDD) holds the diffusion head and, in GenDD's main
    stage, every parameter whose name contains "ln" (e.g. a ViT student's `ln_1`/`ln_2`); `"decay"`
    (`args.weight_decay`) holds everything else: the student's other norms and biases, and the head's condition
    LayerNorm, which the reference keeps outside its diffusion module. Stage 1 and the baselines decay every student
    parameter (the official stage-1 scripts decay all). Frozen parameters are left out; empty groups too."""
    gendd_main = args.stage == "main" and args.method in GENDD_METHODS
    groups = {"decay": [], "head": []}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        in_head = name.startswith("head.") and not name.startswith("head.condition_norm.")
        groups["head" if in_head or (gendd_main and "ln" in name) else "decay"].append(parameter)
    decay = {"decay": args.weight_decay, "head": args.head_weight_decay}
    return [{"params": params, "weight_decay": decay[name], "name": name} for name, params in groups.items() if params]


def prepare_model_for_method(
    model: GenDDForImageClassification,
    args: GenDDTrainingArguments,
    teacher: TimmTeacher | None = None,
    image_mixup: bool = False,
) -> None:
    """Make `model` ready for `args.method` and `args.stage`, in place.

    Loads `args.init_from`'s student, adds stage 1's projection, sets what the method fixes in the config
    (`inference_path="probe"` for the baselines, `contraction=0` for `gendd_unsup`, no feature mixup with image
    mixup, as in the paper's A1/A2 recipes), checks the teacher and copies its classifier into a model whose copy is
    still zero, and freezes every top-level module that `args.trainable_modules` does not list.
    """
    if args.init_from is not None:
        load_student_weights(model, args.init_from)
    if args.stage == "pretrain":
        model.add_feature_projection()

    overrides = {}  # config field -> (value, why)
    if args.method not in GENDD_METHODS:
        overrides["inference_path"] = ("probe", f"method={args.method!r} classifies with the probe")
    if args.method == "gendd_unsup":
        overrides["contraction"] = (0.0, "gendd_unsup is GenDD without labels (lambda 0)")
    if image_mixup:
        overrides["feature_mixup_beta"] = (0.0, "image mixup/cutmix replaces feature mixup, as in the A1/A2 recipes")
    defaults = inspect.signature(type(model.config).__init__).parameters
    for name, (value, why) in overrides.items():
        current = getattr(model.config, name)
        if current != value:
            # A value someone chose is worth a warning; the config's default, set as the method needs, is not.
            log = logger.info if current == defaults[name].default else logger.warning
            log(f"Setting config.{name}={value!r} (was {current!r}): {why}.")
            setattr(model.config, name, value)

    if teacher is not None:
        check_teacher(model.config, teacher)
        if not model.teacher_weight.any():
            model.set_teacher_classifier(teacher.classifier_weight, teacher.classifier_bias)
        elif not torch.equal(model.teacher_weight.cpu(), teacher.classifier_weight.cpu()):
            logger.warning("The model's teacher classifier differs from the teacher's; keeping the model's.")
    elif (args.uses_teacher_classifier or args.uses_teacher_outputs) and not model.teacher_weight.any():
        raise ValueError(
            f"method={args.method!r} (stage={args.stage!r}) uses the teacher classifier, but the model's copy is zero "
            "and no teacher was given: pass teacher= to GenDDTrainer, or call model.set_teacher_classifier(W, b)."
        )

    model.requires_grad_(False)
    for name in args.trainable_modules:
        getattr(model, name).requires_grad_(True)


class GenDDTrainer(Trainer):
    r"""
    A [`~transformers.Trainer`] for GenDD and its baselines (`args.method`), stage 1 (`args.stage="pretrain"`) and
    evaluation of both inference paths. Works with `python` and `accelerate launch` alike (DDP: the parameters a method
    does not use are frozen, so `ddp_find_unused_parameters=False`).

    Training objective per method (`labels`: hard `(B,)`, or soft `(B, C)` from `mixup_fn`):

    - `ce`: cross-entropy of `probe(z)` (gradient into the backbone). Logs `ce_loss`.
    - `kd`: `ce_loss + kd_loss(probe(z), teacher logits, T=kd_temperature)`. Logs `ce_loss`, `kd_loss`.
    - `dkd`: `ce_loss + dkd_loss(...)` with `args.dkd_kwargs` (hard labels only). Logs `ce_loss`, `dkd_loss`.
    - `kl_unsup`: `kd_loss` alone, no labels. Logs `kd_loss`.
    - `gendd`: the model's loss, diffusion on contracted teacher features plus the detached probe's cross-entropy.
      Logs `diffusion_loss`, `probe_loss`.
    - `gendd_unsup`: the same with `contraction=0` and the teacher's softmax in place of labels.
    - `stage="pretrain"`: cross-entropy of `classify_features(feature_projection(z))` against the labels (or the
      teacher's softmax for the unsupervised methods). Logs `ce_loss`.

    Hard labels are class indices in `0..num_labels - 1`. `-100` (`IGNORE_INDEX`, Hugging Face's ignore index) marks
    an image without class: the cross-entropy of `ce`, `kd` and stage 1 skips it in training without `mixup_fn` (the
    `kd` term still uses the image). Any other label, or -100 elsewhere (GenDD's contraction, `dkd`, mixup,
    evaluation, which scores every image), raises a `ValueError` naming it before the forward.

    The logged terms are averaged like `loss`: over the optimizer steps since the last log, the micro-batches of
    gradient accumulation and the processes. `loss` is their sum.

    Teacher outputs come from the batch when it has `args.teacher_features_column` (and optionally
    `args.teacher_logits_column`; else the logits are `model.classify_features(features)`), in which case the teacher
    is never run; otherwise from `teacher`, in eval mode under no_grad, prepared by Accelerate for evaluation only.

    `evaluate()` returns `eval_loss` and, for each path of `args.inference_paths`, `eval_{path}_top1` and
    `eval_{path}_top5` (fractions, from the packaged `top_k_accuracy` metric over the whole gathered eval set):
    `sampled` and/or `probe` for GenDD, `probe` for the baselines, `projection` in stage 1. The sampled path uses the
    model's `sampling_config` unless `args.eval_*` override it; each image's noise comes from its seed, as in
    `pipeline()`, so a saved model scores the same there. Evaluation runs in a forked RNG, so it does not change the
    training run. `predict()` returns
    the tuple of per-path logits in the same order.

    Checkpoints are the Trainer's: `model.safetensors` and `config.json` (with the model code, for
    `trust_remote_code`), plus `trainer_state.json`, `optimizer.pt`, `scheduler.pt`, `rng_state.pth` and
    `training_args.bin`. Those `.pt`/`.pth`/`.bin` files are pickles written by your own run to resume it (the Trainer
    reads the first three back with `weights_only=True`), not files to share: a saved or pushed model is its
    safetensors weights; only `hub_strategy="checkpoint"` pushes the resume pickles, below.
    `train(resume_from_checkpoint=...)` takes a checkpoint folder, `True` (the strings `"true"` and `"latest"` too, as
    the command line passes them) for the latest checkpoint of `output_dir`, or `"hub"` (below), and continues where
    the run stopped. With the same `seed` and `data_seed`, a run resumed from a checkpoint written at the end of
    an epoch ends with exactly the weights of a run that was never interrupted (random augmentation, mixup and GenDD's
    noise included). From the middle of an epoch it continues correctly but not identically: the data loader had
    already drawn the next batch's random augmentation when the checkpoint was written, so that batch is augmented
    differently.

    The Hub goes through the Trainer's own machinery (`push_to_hub`, `hub_model_id`, `hub_strategy`, `hub_token`,
    `hub_private_repo`, `hub_revision`, `hub_always_push`), with gendd_hf's files (`gendd_hf.hub`): each push of the
    model folder sends its `PUSHED_FILES` with the GenDD card ([`create_model_card`]), never `training_args.bin`,
    logs or local checkpoints; `hub_strategy="checkpoint"` (`"all_checkpoints"`) also pushes each checkpoint to
    `last-checkpoint/` (`checkpoint-N/`) with its optimizer, scheduler and RNG pickles but without
    `training_args.bin` (which holds `hub_token`). `train(resume_from_checkpoint="hub")` downloads `last-checkpoint/`
    of `hub_model_id` and resumes from it (`"hub:checkpoint-N"` for another folder); the pickles are loaded with
    `weights_only=True`, as for a local checkpoint: resume only from a repository you or someone you trust pushed to.

    A NaN or infinite training loss raises [`NonFiniteLossError`] naming the step, before the optimizer uses it: the
    checkpoints already written stay as they are, and the model in memory is put back as it was after the last
    optimizer step (from its buffers, copied at the start of each step: 2 MB for a ResNet-18 student, 8 MB for a
    ResNet-50 one with a 2048-d teacher).

    Args:
        model ([`GenDDForImageClassification`]):
            The student. It is prepared in place by [`prepare_model_for_method`].
        args ([`GenDDTrainingArguments`]):
            Training arguments, method and stage.
        teacher ([`TimmTeacher`], `nn.Module` or `str`, *optional*):
            The frozen teacher: a `TimmTeacher`, a timm model (wrapped), or a timm model name (created with pretrained
            weights from the Hub). Not needed for `ce`, for supervised stage 1, or when the batches carry teacher
            outputs and the model already holds the teacher classifier.
        mixup_fn (`Callable`, *optional*):
            Batch mixup/cutmix in training, `(pixel_values, labels) -> (mixed pixel_values, soft labels)`, such as
            `gendd_hf.data.mixup_fn(...)` (timm's `Mixup`, on batches of any size). Needs labels and online teacher
            outputs; not with `dkd`.
        model_card (`dict`, *optional*):
            Fields of [`~gendd_hf.model_card.ModelCardInfo`] that the trainer cannot know, for every card it writes:
            the training data (`dataset`, `train_split`, `streaming`), the evaluation data (`eval_dataset`,
            `eval_split`), `license`, `notes`... (see [`model_card_info`]).
        trainer_kwargs:
            Passed to `Trainer` (`train_dataset`, `eval_dataset`, `data_collator`, `callbacks`, `compute_metrics`...).
            `model_init` is not supported.
    """

    def __init__(
        self,
        model: GenDDForImageClassification,
        args: GenDDTrainingArguments,
        teacher: TimmTeacher | nn.Module | str | None = None,
        mixup_fn: Callable | None = None,
        model_card: Mapping | None = None,
        **trainer_kwargs,
    ):
        if not isinstance(args, GenDDTrainingArguments):
            raise TypeError(f"GenDDTrainer needs GenDDTrainingArguments, got {type(args).__name__}.")
        if not isinstance(model, GenDDForImageClassification):
            raise TypeError(
                f"GenDDTrainer trains a GenDDForImageClassification (every method uses it), got {type(model).__name__}."
            )
        if mixup_fn is not None and not args.uses_labels:
            raise ValueError(f"mixup_fn mixes labels, but method={args.method!r} trains without labels; drop it.")
        if mixup_fn is not None and args.method == "dkd" and args.stage == "main":
            raise ValueError("method='dkd' needs hard labels (one target class per image); drop mixup_fn.")
        teacher = as_teacher(teacher)
        prepare_model_for_method(model, args, teacher, image_mixup=mixup_fn is not None)
        if args.channels_last:  # the images follow in compute_loss
            model.student.to(memory_format=torch.channels_last)
            if teacher is not None:
                teacher.to(memory_format=torch.channels_last)
        for name in ("train_dataset", "eval_dataset"):
            check_dataset_classes(trainer_kwargs.get(name), model.config.num_labels, name)
        if trainer_kwargs.get("compute_metrics") is None:
            trainer_kwargs["compute_metrics"] = partial(top_k_metrics, paths=args.inference_paths)
        super().__init__(model=model, args=args, **trainer_kwargs)

        self.teacher = None if teacher is None else self.accelerator.prepare_model(teacher, evaluation_mode=True)
        self._teacher_in_chans = None if teacher is None else teacher.in_chans
        self.mixup_fn = mixup_fn
        self.model_card_fields = dict(model_card or {})
        if args.stage == "main":
            self.add_callback(AdamBeta2Callback(args.adam_beta2_start, args.adam_beta2_end))
        if not is_terminal() and any(type(cb) is ProgressCallback for cb in self.callback_handler.callbacks):
            # tqdm bars written to a log file become lines of tens of kilobytes
            self.remove_callback(ProgressCallback)
            self.add_callback(LogProgressCallback)
        # Loss terms summed since the last log, and the optimizer steps they cover.
        self._logged_terms: dict[str, torch.Tensor] = {}
        self._logged_steps = 0.0
        # The model's buffers at the start of the current optimizer step, and that step (see NonFiniteLossError).
        self._step_buffers: list[torch.Tensor] | None = None
        self._step_buffers_step: int | None = None

    # ---- training -------------------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train` from the checkpoint that [`resolve_checkpoint`] finds (`"true"`/`"latest"` included), or
        from the one pushed to the Hub (`"hub"`, `"hub:checkpoint-N"`: see [`download_hub_checkpoint`]), with a clear
        error when there is none or it is not a Trainer checkpoint folder."""
        if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.partition(":")[0].lower() == HUB_RESUME:
            resume_from_checkpoint = self.download_hub_checkpoint(resume_from_checkpoint.partition(":")[2] or None)
        checkpoint = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir)
        self._step_buffers = self._step_buffers_step = None
        output = super().train(resume_from_checkpoint=checkpoint, **kwargs)
        if self.args.one_pass:
            self.one_pass_report = self.distil_probe()
            self.log({f"one_pass_{k}": v for k, v in self.one_pass_report.items() if k in ("mse", "top1_agreement")})
        return output

    def download_hub_checkpoint(self, path_in_repo: str | None = None) -> str:
        """Download the checkpoint folder `path_in_repo` (default `last-checkpoint`) of the run's Hub repository
        (`hub_model_id`, at `hub_revision`) into the Hub cache, the local main process first; returns its path."""
        repo_id = self.hub_model_id or self.args.hub_model_id
        if repo_id is None:
            raise ValueError(
                f"resume_from_checkpoint={HUB_RESUME!r} resumes from the checkpoint pushed to the run's Hub "
                "repository, but hub_model_id is not set: pass hub_model_id='namespace/name' (--hub_model_id)."
            )
        with self.args.main_process_first(local=True, desc=f"downloading a checkpoint of {repo_id}"):
            return download_checkpoint(
                repo_id, path_in_repo or HUB_CHECKPOINT, revision=self.args.hub_revision, token=self.args.hub_token
            )

    def distil_probe(self) -> dict:
        """One-pass GenDD (`args.one_pass`): refit the probe to the sampled path on (up to 10,000 of) the training
        images (`gendd_hf.one_pass.distil_probe`), every process on all of them. Save the model afterwards."""
        model = self.accelerator.unwrap_model(self.model)
        batches = (batch["pixel_values"] for batch in self.get_train_dataloader())
        config = OnePassConfig(guidance_scale=self.args.one_pass_guidance_scale)  # the model's sampler, one sample
        return distil_probe(model, batches, config, gather=self.accelerator.gather)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """The schedule of `args.lr_scheduler_type`, or the official per-epoch cosine or step decay that
        `args.lr_scheduler_kwargs` asks for (`warmup_epochs`, `min_lr`, `lr_decay_epochs`; see [`epoch_scheduler`])."""
        if self.lr_scheduler is None:
            self.lr_scheduler = epoch_scheduler(self.args, optimizer or self.optimizer, num_training_steps)
        return super().create_scheduler(num_training_steps, optimizer)

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """The optimizer of `args.optim` (AdamW by default) over [`parameter_groups`]."""
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            groups = parameter_groups(self.accelerator.unwrap_model(opt_model), self.args)
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs or self.get_optimizer_cls_and_kwargs(
                self.args, opt_model
            )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def training_step(
        self, model: nn.Module, inputs: dict[str, torch.Tensor], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """`Trainer.training_step`, first copying the model's buffers on the first micro-batch of each optimizer step:
        the forward changes them, and a non-finite loss puts them back (see [`NonFiniteLossError`])."""
        if self._step_buffers_step != self.state.global_step:
            buffers = self.accelerator.unwrap_model(self.model).buffers()
            self._step_buffers = [buffer.detach().clone() for buffer in buffers]
            self._step_buffers_step = self.state.global_step
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, GenDDImageClassifierOutput]:
        """The loss of `args.method` (see the class docstring); every term is a mean over the batch, so
        `num_items_in_batch` is not needed."""
        args = self.args
        unwrapped = self.accelerator.unwrap_model(model)
        pixel_values = inputs["pixel_values"]
        labels = self._method_labels(inputs)
        if model.training and labels is not None:
            self._check_labels(labels, training=True)  # evaluation checks them in prediction_step
        if model.training and self.mixup_fn is not None:
            pixel_values, labels = self.mixup_fn(pixel_values, labels)
        if args.channels_last:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        teacher_features = teacher_logits = None
        if args.uses_teacher_outputs:
            teacher_features, teacher_logits = self._teacher_outputs(inputs, pixel_values, unwrapped, model.training)

        if args.method in GENDD_METHODS and args.stage == "main":
            outputs = model(
                pixel_values=pixel_values, labels=labels, teacher_features=teacher_features, inference_path="probe"
            )
            terms = {"diffusion_loss": outputs.diffusion_loss, "probe_loss": outputs.probe_loss}
        else:
            # The baselines and stage 1 classify the student feature with gradient into the backbone.
            outputs = model(pixel_values=pixel_values, return_loss=False, inference_path="probe")
            if args.stage == "pretrain":
                logits = unwrapped.path_logits(outputs.student_features, PROJECTION_PATH)
                target = labels if labels is not None else teacher_logits.softmax(dim=-1)
                terms = {"ce_loss": soft_cross_entropy(logits, target)}
            else:
                terms = self._baseline_terms(unwrapped.probe(outputs.student_features), labels, teacher_logits)
        loss = sum(terms.values())

        if model.training:
            self._check_finite(loss, terms)
            self._accumulate_terms(terms)
        return (loss, outputs) if return_outputs else loss

    def _method_labels(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if not self.args.uses_labels:
            return None
        labels = inputs.get("labels")
        if labels is None:
            raise ValueError(
                f"method={self.args.method!r} needs labels, but the batch has no 'labels' (keys: {sorted(inputs)}). "
                "ImageCollator fills them from the dataset's label column: use labelled data, or an unsupervised "
                f"method ({', '.join(UNSUPERVISED_METHODS)})."
            )
        return labels

    def _check_labels(self, labels: torch.Tensor, training: bool) -> None:
        """Raise a `ValueError` naming the value, the valid range and the fix when a hard label is not a class of the
        model (see the class docstring), before a forward turns it into an `IndexError` (a device-side assert on a
        GPU) or, for GenDD's contraction, silently into another class."""
        if labels.is_floating_point():
            return  # soft labels
        args, num_labels = self.args, self.accelerator.unwrap_model(self.model).config.num_labels
        may_ignore = training and self.mixup_fn is None and (args.stage == "pretrain" or args.method in ("ce", "kd"))
        valid = (labels >= 0) & (labels < num_labels)
        if may_ignore:
            valid |= labels == IGNORE_INDEX
        invalid = (~valid).any().float().reshape(1)
        # Every process must raise together, or the others would wait forever in the next collective.
        if not bool(self.accelerator.gather(invalid).any()):
            return
        if bool(valid.all()):
            raise ValueError("Another process got a label that is not a class of the model; its error names it.")
        value = labels[~valid][0].item()
        batch = "a training" if training else "an evaluation"
        classes = f"class indices in 0..{num_labels - 1} (num_labels={num_labels})"
        if value == IGNORE_INDEX:
            raise ValueError(
                f"Got label {IGNORE_INDEX} (the ignore index: an image without class) in {batch} batch, but only the "
                "cross-entropy of method 'ce' or 'kd' or of stage 'pretrain', in training without mixup_fn, skips it; "
                f"here labels must be {classes}. Drop the images without class (e.g. dataset.filter(lambda row: "
                f"row['label'] != {IGNORE_INDEX})), or train on them without labels "
                f"({', '.join(UNSUPERVISED_METHODS)})."
            )
        hint = ""
        if value < 0:
            ignore = f", or label them {IGNORE_INDEX}, which this method skips" if may_ignore else ""
            hint = f" A negative label usually marks an image without class: drop those images{ignore}."
        raise ValueError(
            f"Got label {value} in {batch} batch, but labels must be {classes}"
            f"{f' or {IGNORE_INDEX} (skipped)' if may_ignore else ''}: label the data with the model's classes "
            f"(the teacher's).{hint}"
        )

    def _teacher_outputs(self, inputs, pixel_values, unwrapped, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
        args = self.args
        features = inputs.get(args.teacher_features_column)
        if features is not None:
            if training and self.mixup_fn is not None:
                raise ValueError(
                    f"The batch carries precomputed '{args.teacher_features_column}' of un-mixed images, which do "
                    "not match the mixed images of mixup_fn: drop mixup_fn or run the teacher online."
                )
            features = features.float()
            logits = inputs.get(args.teacher_logits_column)
            logits = unwrapped.classify_features(features) if logits is None else logits.float()
            return features, logits
        if self.teacher is None:
            raise ValueError(
                f"method={args.method!r} (stage={args.stage!r}) needs teacher outputs: pass teacher= to GenDDTrainer "
                f"or give the batches a '{args.teacher_features_column}' column."
            )
        channels = pixel_values.shape[1]
        if self._teacher_in_chans is not None and channels != self._teacher_in_chans:
            raise ValueError(
                f"pixel_values have {channels} channels but the teacher expects {self._teacher_in_chans}; build the "
                "transforms from the data config that both the teacher and the student accept."
            )
        output = self.teacher(pixel_values)
        return output.features, output.logits

    def _baseline_terms(self, logits, labels, teacher_logits) -> dict[str, torch.Tensor]:
        args = self.args
        terms = {} if labels is None else {"ce_loss": soft_cross_entropy(logits, labels)}
        if args.method in ("kd", "kl_unsup"):
            terms["kd_loss"] = kd_loss(logits, teacher_logits, args.kd_temperature)
        elif args.method == "dkd":
            # DKD ramps in over epochs counted from 1, as its reference code does.
            epoch = None if self.state.epoch is None else int(self.state.epoch) + 1
            terms["dkd_loss"] = dkd_loss(logits, teacher_logits, labels, epoch=epoch, **args.dkd_kwargs)
        return terms

    def _check_finite(self, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        finite = torch.isfinite(loss.detach()).float().reshape(1)
        # Every process must raise together, or the others would wait forever in the next collective.
        if bool(self.accelerator.gather(finite).all()):
            return
        model = self.accelerator.unwrap_model(self.model)
        if self._step_buffers is not None:
            for buffer, kept in zip(model.buffers(), self._step_buffers):
                buffer.copy_(kept)
        step = self.state.global_step
        if all(bool(torch.isfinite(parameter).all()) for parameter in model.parameters()):
            memory = f"the model in memory is back at its state after step {step}"
        else:
            memory = (
                f"the model in memory has non-finite parameters from optimizer step {step} itself (do not save it; "
                f"resume from a checkpoint before step {step})"
            )
        output_dir = self.args.output_dir
        last = get_last_checkpoint(output_dir) if output_dir and os.path.isdir(output_dir) else None
        values = ", ".join(f"{name}={value.item():.4g}" for name, value in terms.items())
        raise NonFiniteLossError(
            f"Training stopped: the {self.args.method!r} loss is {loss.item()} at step {step + 1} "
            f"(epoch {self.state.epoch or 0:.2f}; {values}). No optimizer step used it and no checkpoint was written "
            f"for it; {memory}; the last checkpoint is {last or 'none (nothing was saved yet)'}. Check the data and "
            "teacher outputs for NaN, or resume from that checkpoint with a lower learning_rate."
        )

    def _accumulate_terms(self, terms: dict[str, torch.Tensor]) -> None:
        scale = 1.0 / self.current_gradient_accumulation_steps
        for name, value in terms.items():
            self._logged_terms[name] = self._logged_terms.get(name, 0.0) + value.detach().float() * scale
        self._logged_steps += scale

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the method's loss terms to the training logs (those with `loss`), averaged like `loss`."""
        if "loss" in logs and self._logged_terms:
            names = sorted(self._logged_terms)
            values = torch.stack([self._logged_terms[name] for name in names])[None]
            values = self.accelerator.gather(values).mean(dim=0) / self._logged_steps
            logs.update({name: value.item() for name, value in zip(names, values)})
            self._logged_terms, self._logged_steps = {}, 0.0
        super().log(logs, start_time)

    # ---- model card and Hub ---------------------------------------------------------------------------------------
    def model_card_info(self, **fields) -> ModelCardInfo:
        """The GenDD model card of the run so far: the model's student and sampling settings, the teacher and the
        source of its weights, the method and schedule (optimizer steps for a run given in `max_steps`, else epochs),
        the total batch size and the accuracies of the last evaluation; overridden by the trainer's `model_card`
        fields, then by `fields`. The `notes` of both follow the trainer's own. A model that this trainer has not
        trained keeps the card it was loaded with (`model.model_card`), with this trainer's evaluation if any."""
        args, state = self.args, self.state
        repo_id = self.hub_model_id or args.hub_model_id
        model = self.accelerator.unwrap_model(self.model)
        teacher = None if self.teacher is None else self.accelerator.unwrap_model(self.teacher)
        last_eval = next(
            (logs for logs in reversed(state.log_history) if any(f"eval_{p}_top1" in logs for p in INFERENCE_PATHS)),
            {},
        )
        accuracy = {
            f"{path}_accuracy": {
                k: last_eval[f"eval_{path}_{k}"] for k in ("top1", "top5") if f"eval_{path}_{k}" in last_eval
            }
            or None
            for path in INFERENCE_PATHS
        }
        recorded = None if state.global_step else recorded_card_fields(model.model_card)
        if recorded is not None:
            info = {**recorded, "repo_id": repo_id or recorded["repo_id"]}
            if last_eval:  # on data that the caller's `model_card` fields name, not necessarily the card's
                info.update(accuracy, eval_dataset="not recorded", eval_split="not recorded")
            notes = recorded["notes"]
        else:
            schedule = (
                {"steps": state.global_step}
                if args.max_steps > 0
                else {"epochs": None if state.epoch is None else round(state.epoch, 2)}
            )
            notes = (
                f"Stage `{args.stage}`, {state.global_step} optimizer steps on {args.world_size} process(es); warm-up "
                f"{args.warmup_steps} (steps, or a fraction of training); weight decay {args.weight_decay} "
                f"({args.head_weight_decay} on the diffusion head, as the GenDD code); AdamW beta2 from "
                f"{args.adam_beta2_start} to {args.adam_beta2_end} on a cosine."
            )
            info = {
                "model_name": (repo_id or str(Path(args.output_dir).resolve())).split("/")[-1],
                "repo_id": repo_id,
                "teacher": "not recorded" if teacher is None else describe_teacher(teacher.name, teacher.weights),
                "dataset": "not recorded",
                "eval_split": "not recorded" if last_eval else None,
                "method": args.method,
                **accuracy,
                "learning_rate": args.learning_rate,
                "batch_size": args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps,
                "lr_scheduler": getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type),
                **schedule,
            }
        extra = {**self.model_card_fields, **fields}
        notes = " ".join(filter(None, (notes, self.model_card_fields.get("notes"), fields.get("notes"))))
        return ModelCardInfo.from_model(model, **{**info, **extra, "notes": notes})

    def create_model_card(self, finetuned_from: str | None = None, **fields) -> None:
        """Write the GenDD model card of [`model_card_info`] (not transformers' generic card) to
        `output_dir/README.md`, on process zero. The Trainer calls it when pushing, with `model_name` and the keyword
        arguments of `push_to_hub`: `license`, `dataset`, `tags` and the other `ModelCardInfo` fields are taken as
        they are, `finetuned_from` as `base_model`."""
        if not self.is_world_process_zero():
            return
        if finetuned_from is not None:
            fields["base_model"] = finetuned_from
        write_model_card(self.args.output_dir, self.model_card_info(**fields))

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **card_fields,
    ):
        """`Trainer.push_to_hub` with gendd_hf's files: save the model, write the GenDD card ([`create_model_card`]
        with `card_fields`), wait for any checkpoint push in progress, and upload the `PUSHED_FILES` of `output_dir`
        (never `training_args.bin`, logs or checkpoints) to `hub_model_id`, created if needed.

        Returns:
            The `huggingface_hub.CommitInfo` of the upload (a `Future` of it with `blocking=False`); `None` on the
            processes other than the main one.
        """
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        self.create_model_card(**card_fields)
        self._finish_current_push()
        return upload_model_folder(
            self.args.output_dir,
            self.hub_model_id,
            token=token,
            revision=revision or self.args.hub_revision,
            commit_message=commit_message,
            run_as_future=not blocking,
        )

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """The Trainer's push at each save (`hub_strategy` `every_save`, `checkpoint`, `all_checkpoints`) with
        gendd_hf's files: the model files of the checkpoint are copied to `output_dir`, whose `PUSHED_FILES` go up
        with the GenDD card of the run so far; `checkpoint` and `all_checkpoints` also push the checkpoint folder
        (to `last-checkpoint/` or `checkpoint-N/`) without `training_args.bin`. As the Trainer does, both uploads run
        in the background, and a save is not pushed while the previous push runs, unless `hub_always_push`."""
        args = self.args
        if not self.is_world_process_zero() or args.hub_strategy == HubStrategy.END:
            return
        if not args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return
        self.callback_handler.on_push_begin(args, self.state, self.control)
        copy_model_files(checkpoint_folder, args.output_dir)
        self.create_model_card()
        at = f"step {self.state.global_step}" if args.save_strategy == SaveStrategy.STEPS else None
        message = f"Training in progress, {at or f'epoch {int(self.state.epoch)}'}"
        hub = {"token": args.hub_token, "revision": args.hub_revision, "run_as_future": True}
        jobs = [upload_model_folder(args.output_dir, self.hub_model_id, commit_message=message, **hub)]
        if args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            path = HUB_CHECKPOINT if args.hub_strategy == HubStrategy.CHECKPOINT else Path(checkpoint_folder).name
            jobs.append(
                upload_checkpoint(
                    checkpoint_folder, self.hub_model_id, path, commit_message=f"{message}, checkpoint", **hub
                )
            )
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress(jobs)
        else:
            self.push_in_progress.jobs.extend(jobs)

    # ---- evaluation -----------------------------------------------------------------------------------------------
    def evaluation_loop(self, *args, **kwargs):
        """`Trainer.evaluation_loop` in a forked RNG (the evaluation loss draws timesteps and noise): reproducible
        scores, and a training run that does not depend on when it evaluates."""
        device = self.args.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.args.eval_seed or 0)
            return super().evaluation_loop(*args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only: bool, ignore_keys=None):
        """`(loss, per-path logits tuple, labels)`; the loss needs labels unless the method is unsupervised."""
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        if labels is not None:
            self._check_labels(labels, training=False)
        with torch.no_grad():
            if labels is not None or not self.args.uses_labels:
                loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
                loss = loss.detach()
            else:
                loss = None
                outputs = model(pixel_values=inputs["pixel_values"], return_loss=False, inference_path="probe")
            if prediction_loss_only:
                return loss, None, None
            unwrapped = self.accelerator.unwrap_model(model)
            features = outputs.student_features
            pixels = inputs["pixel_values"]
            logits = tuple(self._path_logits(unwrapped, path, features, pixels) for path in self.args.inference_paths)
        return loss, logits, labels

    def _path_logits(
        self,
        model: GenDDForImageClassification,
        path: str,
        student_features: torch.Tensor,
        pixel_values: torch.Tensor,
    ):
        """`model.path_logits` with the evaluation's sampling settings (`eval_*` arguments); each image's noise is
        seeded from its pixels, as in `forward` and the pipeline, so evaluation and serving give the same answers."""
        args = self.args
        return model.path_logits(
            student_features,
            path,
            num_inference_steps=args.eval_num_inference_steps,
            guidance_scale=args.eval_guidance_scale,
            num_samples=args.eval_num_samples,
            sampler=args.eval_sampler,
            seed=args.eval_seed,
            pixel_values=pixel_values,
        )


__all__ = [
    "IGNORE_INDEX",
    "LATEST_CHECKPOINT",
    "NonFiniteLossError",
    "GenDDTrainer",
    "as_teacher",
    "check_checkpoint",
    "check_dataset_classes",
    "check_teacher",
    "load_student_weights",
    "parameter_groups",
    "prepare_model_for_method",
    "resolve_checkpoint",
]
