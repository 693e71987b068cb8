"""Teacher outputs as a dataset: compute them once, share them on the Hub, stream them during training.

The teacher's forward costs as much as a student training step, on every epoch and every GPU. This package computes
it once, for K augmented views per image, and stores each view's parameters with the teacher's pooled feature (float16)
and logits as parquet shards (`datasets` format, with a dataset card); training replays exactly the stored view on
the image and feeds the stored outputs to `GenDDTrainer`, which then never runs (or builds) a teacher.

Training from stored outputs is one call (the recipes' `--teacher_outputs <folder or Hub id>`)::

    from gendd_hf.teacher_outputs import ViewConfig, teacher_outputs_dataset

    train_dataset = teacher_outputs_dataset(
        images,                      # the image dataset the outputs were computed from (datasets.Dataset or stream)
        "user/resnet34-imagenet-teacher-outputs",   # or a local folder
        view_config=ViewConfig.from_data_config(data_config, preset="regular"),  # must match the record
        teacher="resnet34.a1_in1k",  # must match the record (or leave None)
        seed=args.seed,
    )
    train_dataset.outputs.load_teacher_classifier(model)   # GenDD's class centres, without building the teacher
    trainer = GenDDTrainer(model, args, train_dataset=train_dataset)   # no teacher, default_data_collator

It yields `pixel_values`, `labels`, `teacher_features` and `teacher_logits` per image; each epoch uses one of the K
stored views of each image (every view once per K epochs). Precomputation is `recipes/precompute_teacher.py`, or
`precompute_teacher_outputs` on each process followed by `finalize_teacher_outputs` (and `push_teacher_outputs`).

Modules: `views` (replayable augmentation), `images` (image ids and digests), `store` (format, record, card, Hub),
`precompute` (writing), `dataset` (training).
"""

from .dataset import TeacherOutputsDataset, teacher_outputs_dataset
from .precompute import precompute_teacher_outputs
from .store import (
    LOGITS_MODES,
    TeacherOutputs,
    TeacherOutputsMismatchError,
    TeacherOutputsSettings,
    TeacherRecord,
    dense_logits,
    finalize_teacher_outputs,
    push_teacher_outputs,
    teacher_fingerprint,
)
from .views import RandomViewTransform, View, ViewConfig, apply_view, draw_view, epoch_view_index, view_seed


__all__ = [
    "LOGITS_MODES",
    "RandomViewTransform",
    "TeacherOutputs",
    "TeacherOutputsDataset",
    "TeacherOutputsMismatchError",
    "TeacherOutputsSettings",
    "TeacherRecord",
    "View",
    "ViewConfig",
    "apply_view",
    "dense_logits",
    "draw_view",
    "epoch_view_index",
    "finalize_teacher_outputs",
    "precompute_teacher_outputs",
    "push_teacher_outputs",
    "teacher_fingerprint",
    "teacher_outputs_dataset",
    "view_seed",
]
