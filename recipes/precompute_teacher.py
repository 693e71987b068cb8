"""Compute a teacher's outputs once, for K augmented views per image, and store them as a `datasets` dataset.

Usage:
    python recipes/precompute_teacher.py --dataset_name imagenet-1k --teacher_name resnet34.tv_in1k \
        --augmentation regular --num_views 4 --output_dir resnet34-imagenet-teacher-outputs
    accelerate launch --multi_gpu --num_processes 8 recipes/precompute_teacher.py ...   # processes split the shards
    python recipes/precompute_teacher.py --dataset_name fashion_mnist --teacher_name resnet10t \
        --teacher_kwargs '{"in_chans": 1, "num_classes": 10}' --teacher_checkpoint teacher.safetensors \
        --image_size 28 --augmentation small --num_views 4 --output_dir fmnist-teacher-outputs

A rerun with the same arguments skips the shards already written (resumable at shard granularity). `--push_to_hub`
uploads the folder to a Hub dataset repository; train from it with `--teacher_outputs <folder or repo id>` and the
same `--image_size` / `--augmentation`. The transform is the one the training recipes build: the teacher's timm data
config (`TimmTeacher.data_config`) with the `--augmentation`; `--no_augmentation` stores the
deterministic evaluation transform (one view per image), e.g. for the evaluation split.
"""

import sys
from pathlib import Path


# This script's --help (kept current by tests/test_recipe_help.py), printed before the slow imports below
HELP = Path(__file__).with_name("help") / f"{Path(__file__).stem}.txt"
if __name__ == "__main__" and sys.argv[1:] in (["-h"], ["--help"]) and HELP.is_file():
    sys.exit(print(HELP.read_text(), end=""))

from dataclasses import dataclass, field

import torch
from accelerate import PartialState
from transformers import HfArgumentParser

from gendd_hf.cli import check_image_size, parse_json_dict
from gendd_hf.data import load_fashion_mnist, load_image_dataset
from gendd_hf.data.transforms import AUGMENTATIONS
from gendd_hf.progress import quiet_library_bars_in_log_files
from gendd_hf.teacher import TimmTeacher
from gendd_hf.teacher_outputs import (
    LOGITS_MODES,
    TeacherOutputsSettings,
    ViewConfig,
    finalize_teacher_outputs,
    precompute_teacher_outputs,
    push_teacher_outputs,
)


@dataclass
class PrecomputeArguments:
    output_dir: str = field(metadata={"help": "Folder of the teacher outputs (parquet shards, record, card)."})
    dataset_name: str = field(
        metadata={"help": "Hub dataset id, local dataset path, or 'fashion_mnist' (the offline Debian copy)."}
    )
    teacher_name: str = field(metadata={"help": "timm name of the teacher, e.g. resnet34.tv_in1k."})
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name of a Hub dataset."})
    split: str = field(default="train", metadata={"help": "Split of the images (also the split name stored)."})
    image_column: str | None = field(default=None, metadata={"help": "Image column (found automatically if unset)."})
    streaming: bool = field(default=False, metadata={"help": "Stream the images (each process reads them once)."})
    max_samples: int | None = field(default=None, metadata={"help": "Only the first N images (smoke runs)."})
    teacher_checkpoint: str | None = field(
        default=None, metadata={"help": "Local safetensors state dict of the teacher; without it timm's weights."}
    )
    teacher_kwargs: str = field(default="{}", metadata={"help": "JSON timm.create_model arguments of the teacher."})
    image_size: int | None = field(default=None, metadata={"help": "Image size (default: the teacher's)."})
    augmentation: str = field(
        default="regular",
        metadata={"help": "Transform preset of the stored views.", "choices": list(AUGMENTATIONS)},
    )
    no_augmentation: bool = field(
        default=False, metadata={"help": "Store the deterministic evaluation transform (one view per image)."}
    )
    num_views: int = field(default=4, metadata={"help": "Augmented views K per image."})
    seed: int = field(default=0, metadata={"help": "Seed of the views."})
    logits: str = field(default="full", metadata={"help": "Logits to store.", "choices": list(LOGITS_MODES)})
    logits_top_k: int | None = field(default=None, metadata={"help": "k of --logits topk."})
    shard_size: int = field(default=5000, metadata={"help": "Images per parquet shard (the unit of resumption)."})
    batch_size: int = field(default=256, metadata={"help": "Views per teacher forward."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers decoding and augmenting images."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the finished folder to the Hub."})
    hub_repo_id: str | None = field(default=None, metadata={"help": "Hub dataset repo (default: output_dir's name)."})
    hub_private_repo: bool | None = field(default=None, metadata={"help": "Create the Hub repository private."})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (default: the logged-in one)."})

    def __post_init__(self):
        check_image_size(self.image_size)


def load_images(args: PrecomputeArguments):
    if args.dataset_name == "fashion_mnist":
        images = load_fashion_mnist()[args.split]
        images = images.to_iterable_dataset() if args.streaming else images
    else:
        images = load_image_dataset(
            args.dataset_name,
            split=args.split,
            streaming=args.streaming,
            image_column=args.image_column,
            **({"name": args.dataset_config} if args.dataset_config else {}),
        )
    if args.max_samples is not None:
        images = images.take(args.max_samples) if args.streaming else images.select(range(args.max_samples))
    return images


def main(argv: list[str] | None = None) -> None:
    (args,) = HfArgumentParser(PrecomputeArguments).parse_args_into_dataclasses(argv)
    quiet_library_bars_in_log_files()  # our progress stays, as lines in a log file
    # Without a GPU, accelerate forms the process group of `accelerate launch` only when told to run on the CPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    # ---- data and teacher
    images = load_images(args)
    teacher = TimmTeacher.from_timm(
        args.teacher_name,
        pretrained=args.teacher_checkpoint is None,
        checkpoint_path=args.teacher_checkpoint,
        **parse_json_dict(args.teacher_kwargs, "teacher_kwargs"),
    ).to(state.device)
    view_config = ViewConfig.from_data_config(
        teacher.data_config(args.image_size), preset=args.augmentation, is_training=not args.no_augmentation
    )
    settings = TeacherOutputsSettings(
        view_config=view_config,
        num_views=1 if args.no_augmentation else args.num_views,
        seed=args.seed,
        logits=args.logits,
        logits_top_k=args.logits_top_k,
        shard_size=args.shard_size,
    )
    # ---- compute this process's shards, then finish on the main process
    precompute_teacher_outputs(
        images,
        teacher,
        args.output_dir,
        settings,
        args.teacher_name,
        split=args.split,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        process_index=state.process_index,
        num_processes=state.num_processes,
    )
    state.wait_for_everyone()
    if state.is_main_process:
        outputs = finalize_teacher_outputs(args.output_dir, args.split)
        outputs.check_ids()  # one row per image over the shards of every process of every machine
        print(f"{outputs.num_images} images x {settings.num_views} views of {args.teacher_name} in {args.output_dir}")
        # ---- push
        if args.push_to_hub:
            repo_id = args.hub_repo_id or args.output_dir.rstrip("/").split("/")[-1]
            url = push_teacher_outputs(args.output_dir, repo_id, private=args.hub_private_repo, token=args.hub_token)
            print(f"Pushed to {url}")


if __name__ == "__main__":
    main()
