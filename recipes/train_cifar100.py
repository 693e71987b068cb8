"""GenDD (or a KD baseline) on CIFAR-100 with the CIFAR model zoo of the distillation literature.

    python recipes/train_cifar100.py --output_dir gendd-resnet20 --teacher_checkpoint resnet56.safetensors
    accelerate launch --multi_gpu --num_processes 2 recipes/train_cifar100.py --output_dir gendd-resnet20 \
        --teacher_checkpoint resnet56.safetensors

The `cifar_*` teachers have no pretrained weights in timm: pass a safetensors state dict of one trained on
CIFAR-100 (`safetensors.torch.save_file(model.state_dict(), "resnet56.safetensors")`). See docs/recipes.md.
"""

import sys
from pathlib import Path


# gendd_hf.cli.format_recipe_help's text, printed before the imports below, which take seconds
HELP = Path(__file__).with_name("help") / f"{Path(__file__).stem}.txt"
if __name__ == "__main__" and sys.argv[1:] in (["-h"], ["--help"]) and HELP.is_file():
    sys.exit(print(HELP.read_text(), end=""))

from gendd_hf.cli import recipe_main


# ResNet56 -> ResNet20; lr 1e-3 at batch 64 and 30 diffusion rows per token as in the paper, 240 epochs as in the
# CIFAR-100 distillation benchmarks (CRD, DKD).
DEFAULTS = {
    "dataset_name": "uoft-cs/cifar100",
    "eval_split": "test",
    "teacher_name": "cifar_resnet56",
    "student_name": "cifar_resnet20",
    "augmentation": "small",
    "diffusion_batch_mul": 30,
    "learning_rate": 1e-3,
    "per_device_train_batch_size": 64,
    "per_device_eval_batch_size": 256,
    "num_train_epochs": 240,
    # The official res56 -> res20 script's schedule (gendd_hf.schedules): 50 warm-up epochs, x0.1 at 150, 180, 210;
    # its model samples with 100 steps.
    "lr_scheduler_type": "constant_with_warmup",
    "lr_scheduler_kwargs": '{"lr_decay_epochs": [150, 180, 210], "lr_decay_rate": 0.1, "warmup_epochs": 50}',
    "warmup_steps": 0,
    "num_inference_steps": 100,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 2,
    "logging_steps": 50,
}

if __name__ == "__main__":
    recipe_main(DEFAULTS)
