"""GenDD (or a KD baseline) on ImageNet-1k, with the paper's `regular`, `a2` or `a1` recipe.

One GPU:
    python recipes/train_imagenet.py --output_dir gendd-resnet18 --recipe regular
Several GPUs (here 8 x 64 = the paper's batch of 512):
    accelerate launch --multi_gpu --num_processes 8 recipes/train_imagenet.py --output_dir gendd-resnet18

Data: a Hub id (`imagenet-1k`, accept its terms first) or a local imagefolder / parquet / webdataset path through
`--dataset_name`. Stage 1 is `--stage pretrain`; stage 2 starts from it with `--init_from`. See docs/recipes.md.
"""

import sys
from pathlib import Path


# gendd_hf.cli.format_recipe_help's text, printed before the imports below, which take seconds
HELP = Path(__file__).with_name("help") / f"{Path(__file__).stem}.txt"
if __name__ == "__main__" and sys.argv[1:] in (["-h"], ["--help"]) and HELP.is_file():
    sys.exit(print(HELP.read_text(), end=""))

from gendd_hf.cli import IMAGENET_RECIPES, recipe_main


# ResNet34 -> ResNet18 (torchvision teacher weights), lr 2e-3 at a total batch of 512, as in the paper.
DEFAULTS = {
    "dataset_name": "imagenet-1k",
    "eval_split": "validation",
    "teacher_name": "resnet34.tv_in1k",
    "student_name": "resnet18",
    "learning_rate": 2e-3,
    "per_device_train_batch_size": 64,
    "per_device_eval_batch_size": 64,
    # The official res34 -> res18 script's schedule (gendd_hf.schedules): per-epoch cosine to 1e-6, beta2 from 0.96.
    "lr_scheduler_type": "cosine",
    "lr_scheduler_kwargs": '{"warmup_epochs": 10, "min_lr": 1e-06}',
    "warmup_steps": 0,
    "adam_beta2_start": 0.96,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "logging_steps": 50,
    "dataloader_num_workers": 8,
}

if __name__ == "__main__":
    recipe_main(DEFAULTS, recipes=IMAGENET_RECIPES)
