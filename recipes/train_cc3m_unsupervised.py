"""Unsupervised GenDD: distil on unlabeled images streamed from a webdataset (CC3M), evaluate on ImageNet val.

    accelerate launch --multi_gpu --num_processes 8 recipes/train_cc3m_unsupervised.py --output_dir gendd-unsup \
        --max_steps 50000

The training set is streamed (`streaming=True`): each process reads its own tar shards, so `--max_steps` sets the
length of training. No label is read: `gendd_unsup` is GenDD with lambda 0 and the teacher's softmax where labels
would be; `--method kl_unsup` is the KL baseline. The labelled `--eval_dataset_name` measures the result through the
teacher classifier. See docs/recipes.md.
"""

import sys
from pathlib import Path


# gendd_hf.cli.format_recipe_help's text, printed before the imports below, which take seconds
HELP = Path(__file__).with_name("help") / f"{Path(__file__).stem}.txt"
if __name__ == "__main__" and sys.argv[1:] in (["-h"], ["--help"]) and HELP.is_file():
    sys.exit(print(HELP.read_text(), end=""))

from gendd_hf.cli import recipe_main


# ResNet50 -> MobileNet (the paper's unsupervised pair), lr 2e-3 at a total batch of 512.
DEFAULTS = {
    "dataset_name": "pixparse/cc3m-wds",
    "streaming": True,
    "image_column": "jpg",
    "eval_dataset_name": "imagenet-1k",
    "eval_split": "validation",
    "teacher_name": "resnet50.tv_in1k",
    "student_name": "mobilenetv1_100",
    "method": "gendd_unsup",
    "contraction": 0.0,
    "learning_rate": 2e-3,
    "per_device_train_batch_size": 64,
    "per_device_eval_batch_size": 64,
    # The official unsupervised script's schedule (gendd_hf.schedules): 20 warm-up epochs of its 100, cosine to 1e-6.
    "lr_scheduler_type": "cosine",
    "lr_scheduler_kwargs": '{"warmup_epochs": 20, "min_lr": 1e-06, "num_epochs": 100}',
    "warmup_steps": 0,
    "adam_beta2_start": 0.96,
    "eval_strategy": "steps",
    "eval_steps": 5000,
    "save_strategy": "steps",
    "save_steps": 5000,
    "save_total_limit": 2,
    "logging_steps": 50,
    "dataloader_num_workers": 8,
    # Each process reads its own shards of the stream; the default would have process 0 read every batch.
    "accelerator_config": '{"dispatch_batches": false}',
}

if __name__ == "__main__":
    recipe_main(DEFAULTS)
