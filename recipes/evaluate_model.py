"""Top-1 / top-5 of a saved GenDD model for both inference paths (sampled and probe) on a labelled dataset.

    python recipes/evaluate_model.py --model_name_or_path gendd-resnet18 --dataset_name imagenet-1k \
        --eval_split validation --output_dir eval-gendd-resnet18
    accelerate launch --multi_gpu --num_processes 8 recipes/evaluate_model.py --model_name_or_path gendd-resnet18 ...

The folder's recorded preprocessing is used; sampling follows its config unless --eval_num_inference_steps,
--eval_guidance_scale, --eval_num_samples or --eval_sampler say otherwise; --eval_inference_paths probe skips
sampling; --shot_metrics_split train adds the many / medium / few-shot top-1 (ImageNet-LT). Metrics are printed and
written to output_dir/eval_results.json.

(Not named evaluate.py: a script folder is the first entry of sys.path, and a file named like the `evaluate`
library would shadow it for every script in the folder.)
"""

import sys
from pathlib import Path


# This script's --help (kept current by tests/test_recipe_help.py), printed before the slow imports below
HELP = Path(__file__).with_name("help") / f"{Path(__file__).stem}.txt"
if __name__ == "__main__" and sys.argv[1:] in (["-h"], ["--help"]) and HELP.is_file():
    sys.exit(print(HELP.read_text(), end=""))

from transformers import HfArgumentParser

from gendd_hf.cli import EvaluateArguments, evaluate_folder
from gendd_hf.progress import quiet_library_bars_in_log_files
from gendd_hf.training_args import GenDDTrainingArguments


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = HfArgumentParser((EvaluateArguments, GenDDTrainingArguments)).parse_args_into_dataclasses(argv)
    quiet_library_bars_in_log_files()
    return evaluate_folder(*args)


if __name__ == "__main__":
    main()
