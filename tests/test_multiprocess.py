"""Real multi-process training: `accelerate launch` with two processes, torch.distributed over gloo on the CPU.

Nothing is mocked: the two processes train the recipe's `GenDDTrainer` under DDP. On a machine without a GPU,
`use_cpu` makes the Trainer set up a MULTI_CPU process group (without it, each process would train alone);
`GenDDTrainingArguments` sets it when several processes run without an accelerator.
"""

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from gendd_hf.cli import parse_recipe_args, run_recipe
from recipe_helpers import QUIET, ROOT, TINY, free_port, recipe_env, run_script, teacher_args, write_recipe_data


# Saves every process's final weights and its view of the run: only process 0 writes the model folder.
DRIVER = """
import json
import sys
from safetensors.torch import save_file
from transformers import TrainerCallback
from gendd_hf.cli import parse_recipe_args, run_recipe


class SaveWeightsOfEachProcess(TrainerCallback):
    def on_train_end(self, args, state, control, model=None, **kwargs):
        weights = {name: value.detach().contiguous() for name, value in model.state_dict().items()}
        save_file(weights, f"{args.output_dir}/process{args.process_index}.safetensors")
        run = {"world_size": args.world_size, "use_cpu": args.use_cpu, "global_step": state.global_step}
        with open(f"{args.output_dir}/process{args.process_index}.json", "w") as file:
            json.dump(run, file)


run_recipe(*parse_recipe_args(sys.argv[1:]), callbacks=[SaveWeightsOfEachProcess()])
"""
# Records when each process read each split of the recipe's datasets and what the datasets cache held then, and stops
# the run after the data.
LOAD_DRIVER = """
import json
import os
import sys
import time
from pathlib import Path
from gendd_hf.cli import parse_recipe_args, run, run_recipe

cache = Path(os.environ["HF_DATASETS_CACHE"])
load = run.load_split
records = []


def recorded_load(*args, **kwargs):
    before, start = len(list(cache.rglob("*.arrow"))), time.time()
    dataset = load(*args, **kwargs)
    records.append({"start": start, "end": time.time(), "before": before, "after": len(list(cache.rglob("*.arrow")))})
    (cache.parent / f"load{os.environ['RANK']}.json").write_text(json.dumps(records))
    return dataset


run.load_split = recorded_load
run.load_teacher = lambda args: sys.exit(0)  # the data is all this driver is for
run_recipe(*parse_recipe_args(sys.argv[1:]))
"""
# 1e-4 is a tenth of one AdamW step at lr 1e-3; a different batch or data order moves weights by whole steps.
TOLERANCE = 1e-4


def run_two_processes(tmp_path: Path, args: list[str], driver: str = DRIVER) -> None:
    """`driver` (the recipe) with `args` on two processes: `accelerate launch` with the recipes' multi-GPU config."""
    (tmp_path / "driver.py").write_text(driver)
    launch = [
        str(Path(sys.executable).parent / "accelerate"),
        "launch",
        "--config_file",
        str(ROOT / "recipes" / "accelerate_configs" / "multi_gpu.yaml"),
        "--num_processes",
        "2",
        "--main_process_port",
        str(free_port()),
    ]
    run_script([*launch, str(tmp_path / "driver.py"), *args], recipe_env(tmp_path))


class RecordInitialWeights(TrainerCallback):
    weights = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        RecordInitialWeights.weights = {name: value.detach().clone() for name, value in model.state_dict().items()}


@pytest.mark.slow
def test_two_processes_match_one_process_at_the_same_global_batch(tmp_path, datasets_cache_in_tmp_path):
    """2 processes x 4 images against 1 process x 8 images per optimizer step, for 4 steps over 24 images (an epoch
    boundary included). What must match, and does: the data order (Accelerate's seeded sampler gives both runs the same
    permutation; process k takes batches k, k+2, ... of 4, so step s sees the same 8 images), the loss (each process
    averages over its 4 images and DDP averages the gradients: the mean over 8), gradient clipping (on the averaged
    gradients) and the schedule. So the method is `kd` without random augmentation (GenDD's timestep and noise draws
    would differ per process), and the student is `test_vit` (LayerNorm: BatchNorm would normalise with per-process
    statistics of 4 images instead of 8). What differs is the order of float32 sums in the gradient all-reduce."""
    data = write_recipe_data(tmp_path / "data")
    args = [
        "--dataset_name",
        str(data["parquet"]),
        "--label_column",
        "fine_label",
        "--eval_split",
        "test",
        *teacher_args(data),
        "--student_name",
        "test_vit",
        "--student_kwargs",
        '{"img_size": 32}',
        "--image_size",
        "32",
        "--token_dim",
        "32",
        "--head_width",
        "32",
        "--head_depth",
        "1",
        "--method",
        "kd",
        "--no_augmentation",
        *QUIET,
        "--max_steps",
        "4",
        "--learning_rate",
        "1e-3",
        "--seed",
        "5",
        "--use_cpu",
    ]
    two = tmp_path / "two"
    run_two_processes(tmp_path, [*args, "--per_device_train_batch_size", "4", "--output_dir", str(two)])

    one = tmp_path / "one"
    run_recipe(
        *parse_recipe_args([*args, "--per_device_train_batch_size", "8", "--output_dir", str(one)]),
        callbacks=[RecordInitialWeights()],
    )

    first, second = load_file(two / "process0.safetensors"), load_file(two / "process1.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)
    saved = load_file(two / "model.safetensors")
    assert all(torch.equal(saved[name], first[name]) for name in saved)

    single = load_file(one / "model.safetensors")
    assert single.keys() == saved.keys()
    difference = max((saved[name] - single[name]).abs().max().item() for name in single)
    moved = max((single[name] - RecordInitialWeights.weights[name]).abs().max().item() for name in single)
    assert difference < TOLERANCE < moved / 10, (difference, moved)

    top_k = ["eval_probe_top1", "eval_probe_top5"]
    two_metrics = json.loads((two / "eval_results.json").read_text())
    one_metrics = json.loads((one / "eval_results.json").read_text())
    assert {name: two_metrics[name] for name in top_k} == pytest.approx({name: one_metrics[name] for name in top_k})


@pytest.mark.slow
@pytest.mark.skipif(
    getattr(torch, "accelerator", torch.cuda).is_available(),
    reason="use_cpu is implied only where there is no accelerator",
)
def test_two_processes_without_use_cpu_train_as_one_run(tmp_path):
    """The command of docs/recipes.md on a machine without a GPU, `--use_cpu` left out: `GenDDTrainingArguments` sets
    it, so the two processes form one run over gloo (world size 2, one batch of 4 each per step, the same weights)
    instead of two runs of one process writing the same output_dir."""
    data = write_recipe_data(tmp_path / "data")
    out = tmp_path / "out"
    run_two_processes(
        tmp_path,
        [
            "--dataset_name",
            str(data["parquet"]),
            *teacher_args(data),
            *TINY,
            "--student_name",
            "test_vit",
            "--student_kwargs",
            '{"img_size": 32}',
            "--method",
            "kd",
            "--no_augmentation",
            *QUIET,
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "4",
            "--eval_split",
            "",
            "--output_dir",
            str(out),
        ],
    )  # test_vit: LayerNorm, no BatchNorm statistics of each process's own images
    runs = [json.loads((out / f"process{index}.json").read_text()) for index in (0, 1)]
    assert runs == [{"world_size": 2, "use_cpu": True, "global_step": 2}] * 2
    first, second = load_file(out / "process0.safetensors"), load_file(out / "process1.safetensors")
    assert all(torch.equal(first[name], second[name]) for name in first)
    saved = load_file(out / "model.safetensors")
    assert all(torch.equal(saved[name], first[name]) for name in saved)


@pytest.mark.slow
def test_one_process_prepares_the_datasets_while_the_other_waits(tmp_path):
    """Under `accelerate launch` with 2 processes, process 0 loads both splits (prepares: converts the imagefolder
    into the datasets cache) alone; process 1 starts loading once it has finished, finds the prepared cache and adds
    nothing to it (8 GPUs would otherwise download and prepare ImageNet eight times at once)."""
    data = write_recipe_data(tmp_path / "data")
    args = [
        "--dataset_name",
        str(data["imagefolder"]),
        *teacher_args(data),
        *TINY,
        *QUIET,
        "--output_dir",
        str(tmp_path / "out"),
        "--use_cpu",
    ]
    run_two_processes(tmp_path, args, driver=LOAD_DRIVER)
    first, second = (json.loads((tmp_path / f"load{rank}.json").read_text()) for rank in (0, 1))
    assert len(first) == len(second) == 2  # train and validation splits
    assert first[0]["before"] == 0 < first[-1]["after"], first  # process 0 prepared them
    assert second[0]["start"] >= first[-1]["end"], (first, second)  # process 1 waited for it
    assert {record["before"] for record in second} == {record["after"] for record in second} == {first[-1]["after"]}
