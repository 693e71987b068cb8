"""Training across machines, on one machine: two `accelerate launch`es with `--num_machines 2 --machine_rank 0|1
--main_process_ip 127.0.0.1` (recipes/accelerate_configs/multi_node.yaml), one process each, torch.distributed over
gloo on the CPU. Nothing is mocked: the "nodes" meet through accelerate's static rendezvous as real machines do.

Each "node" runs in its own working directory with a relative `--output_dir`, as machines with their own disks would:
what a node writes lands in its own folder, so the test sees which process wrote what.
"""

import io
import json
import os
import runpy
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, Features, Image, Value
from PIL import Image as PILImage
from safetensors.torch import load_file

from gendd_hf.teacher_outputs import TeacherOutputs
from hub_server import FAKE_TOKEN, serve_fake_hub
from recipe_helpers import QUIET, ROOT, TINY, free_port, recipe_env, teacher_args, write_recipe_data
from test_multiprocess import DRIVER, run_two_processes


ACCELERATE = str(Path(sys.executable).parent / "accelerate")
MULTI_NODE = ROOT / "recipes" / "accelerate_configs" / "multi_node.yaml"
PRECOMPUTE = ROOT / "recipes" / "precompute_teacher.py"
# `DRIVER` (the recipe; every process saves its final weights) with `--hold_after_save`'s pause: after its first
# checkpoint, process 1 stops until it is killed, and process 0 waits for it in the next step's gradient all-reduce.
NODE_DRIVER = DRIVER.replace(
    "\nrun_recipe(*parse_recipe_args(sys.argv[1:]), callbacks=[SaveWeightsOfEachProcess()])",
    """
import time


class HoldProcessOneAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if args.process_index == 1:
            while True:
                time.sleep(1)


hold = "--hold_after_save" in sys.argv
argv = [arg for arg in sys.argv[1:] if arg != "--hold_after_save"]
callbacks = [SaveWeightsOfEachProcess(), *([HoldProcessOneAfterSave()] if hold else [])]
run_recipe(*parse_recipe_args(argv), callbacks=callbacks)
""",
)
assert "HoldProcessOneAfterSave" in NODE_DRIVER, "test_multiprocess.DRIVER no longer ends with its run_recipe line"
# The same 2 processes with the same seed and batches, as 2 machines x 1 or 1 machine x 2: only the transport of the
# all-reduce differs (the same gloo sum of the same two gradients). 1e-6 is far below one AdamW step at lr 1e-3 (1e-3
# per weight): another batch, data order or random draw would move the weights by whole steps.
TOLERANCE = 1e-6
# A node that loses its peer stops when gloo sees the connection close: measured 9.5-10 s here (2 loaded cores),
# against the 30 minutes of the default ddp_timeout that a hang would last.
EXIT_SECONDS = 60


def launch_nodes(
    folders: list[Path], args: list[str], env: dict[str, str], script: Path | None = None, processes: int = 1
) -> list[subprocess.Popen]:
    """`script` (default: `NODE_DRIVER`, the recipe) with `args` on two "machines" of `processes` processes each,
    node k in `folders[k]` (its working directory)."""
    port = str(free_port())
    if script is None:
        script = folders[0].parent / "node_driver.py"
        script.write_text(NODE_DRIVER)
    nodes = []
    for rank, folder in enumerate(folders):
        folder.mkdir(parents=True, exist_ok=True)
        command = [
            ACCELERATE,
            "launch",
            "--config_file",
            str(MULTI_NODE),
            "--num_machines",
            "2",
            "--num_processes",
            str(2 * processes),
            "--machine_rank",
            str(rank),
            "--main_process_ip",
            "127.0.0.1",
            "--main_process_port",
            port,
            str(script),
            *args,
        ]
        log = open(folder / f"node{rank}.log", "w")  # noqa: SIM115  (closed with the process)
        nodes.append(subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT))
    return nodes


def kill_node(node: subprocess.Popen) -> None:
    """SIGKILL a node: its launcher and every process below it (torchrun starts each worker in a session of its own,
    which a signal to the launcher's process group would miss)."""
    try:
        processes = [psutil.Process(node.pid), *psutil.Process(node.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    node.wait()


def wait_for(nodes: list[subprocess.Popen], folders: list[Path], timeout: float = 400) -> list[int]:
    codes = []
    for node, folder in zip(nodes, folders):
        try:
            codes.append(node.wait(timeout=timeout))
        except subprocess.TimeoutExpired as error:
            for other in nodes:
                kill_node(other)
            raise AssertionError(
                f"a node hung:\n{(folder / f'node{nodes.index(node)}.log').read_text()[-3000:]}"
            ) from error
    return codes


def check_success(nodes, folders) -> None:
    codes = wait_for(nodes, folders)
    logs = [(folder / f"node{rank}.log").read_text() for rank, folder in enumerate(folders)]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)


def max_difference(first: dict, second: dict) -> float:
    assert first.keys() == second.keys()
    return max((first[name].float() - second[name].float()).abs().max().item() for name in first)


def recipe_args(data: dict) -> list[str]:
    """GenDD on the 24 parquet images, 2 processes x 4 images a step: 3 steps an epoch, 2 epochs, a checkpoint at the
    end of each; no evaluation split (the card and the push still happen)."""
    return [
        "--dataset_name",
        str(data["parquet"]),
        "--label_column",
        "fine_label",
        "--eval_split",
        "",
        *teacher_args(data),
        *TINY,
        "--method",
        "gendd",
        "--no_augmentation",
        *QUIET,
        "--save_strategy",
        "epoch",
        "--num_train_epochs",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "1e-3",
        "--seed",
        "5",
        "--use_cpu",
    ]


@pytest.fixture(scope="module")
def recipe_data(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    tmp = tmp_path_factory.mktemp("multinode")
    return tmp, write_recipe_data(tmp / "data")


@pytest.fixture(scope="module")
def runs(recipe_data):
    """The uninterrupted runs: 2 nodes x 1 process (pushing to a fake Hub), and 1 machine x 2 processes."""
    tmp, data = recipe_data
    args = recipe_args(data)
    folders = [tmp / "node0", tmp / "node1"]
    with serve_fake_hub() as hub:
        env = recipe_env(
            tmp, HF_HUB_OFFLINE=None, TRANSFORMERS_OFFLINE=None, HF_ENDPOINT=hub.endpoint, HF_TOKEN=FAKE_TOKEN
        )
        started = time.perf_counter()
        nodes = launch_nodes(
            folders, [*args, "--output_dir", "out", "--push_to_hub", "--hub_model_id", "gendd/nodes"], env
        )
        check_success(nodes, folders)
        seconds = time.perf_counter() - started
    two = tmp / "two"
    run_two_processes(tmp, [*args, "--output_dir", str(two)])
    return {"tmp": tmp, "data": data, "args": args, "folders": folders, "hub": hub, "two": two, "seconds": seconds}


@pytest.mark.slow
def test_two_nodes_end_with_the_weights_of_two_processes_on_one_machine_and_only_rank_0_writes(runs):
    node0, node1 = (folder / "out" for folder in runs["folders"])
    ranks = [json.loads((folder / f"process{rank}.json").read_text()) for rank, folder in enumerate((node0, node1))]
    assert ranks == [{"world_size": 2, "use_cpu": True, "global_step": 6}] * 2
    # Each rank ends as the same rank of the one-machine run (buffers included: BatchNorm statistics and GenDD's target
    # range are each process's own), and the saved model is rank 0's.
    for rank, folder in enumerate((node0, node1)):
        weights = load_file(folder / f"process{rank}.safetensors")
        assert max_difference(weights, load_file(runs["two"] / f"process{rank}.safetensors")) <= TOLERANCE
    saved, first = load_file(node0 / "model.safetensors"), load_file(node0 / "process0.safetensors")
    assert max_difference(saved, {name: first[name] for name in saved}) == 0.0
    difference = max_difference(saved, load_file(runs["two"] / "model.safetensors"))
    print(f"2 nodes x 1 process against 1 machine x 2 processes: largest weight difference {difference:.3g}")
    assert difference <= TOLERANCE

    # Rank 0 wrote the model, card, checkpoints and push; node 1's disk holds only its own process's files: the test
    # driver's and each checkpoint's RNG state of process 1 (every process saves its own, for an exact resume).
    assert {"model.safetensors", "config.json", "README.md", "checkpoint-3", "checkpoint-6"} <= set(os.listdir(node0))
    written = sorted(str(path.relative_to(node1)) for path in node1.rglob("*") if path.is_file())
    assert written == [
        "checkpoint-3/rng_state_1.pth",
        "checkpoint-6/rng_state_1.pth",
        "process1.json",
        "process1.safetensors",
    ], written
    commits = runs["hub"].repo("gendd/nodes").commits
    summaries = [commit["summary"] for commit in commits]
    # every_save: a push per checkpoint (skipped while the previous one runs) and one at the end, from rank 0 only
    assert summaries.count("GenDD gendd: end of training") == 1 and len(commits) <= 3, summaries
    assert summaries[-1].endswith("end of training")
    assert {"model.safetensors", "README.md"} <= {name for commit in commits for name in commit["files"]}


@pytest.mark.slow
def test_a_dead_node_stops_the_other_and_both_resume_to_the_uninterrupted_weights(runs):
    """Node 1 is killed after the checkpoint of epoch 1 (its process held, so the kill lands mid-run); node 0, waiting
    for it in a gradient all-reduce, exits within seconds instead of hanging. Relaunched with
    `--resume_from_checkpoint latest` (the output folder shared, as on a cluster file system), the two nodes continue
    from checkpoint-3 and end with the weights of the uninterrupted run."""
    tmp = runs["tmp"]
    out = tmp / "shared_out"
    folders = [tmp / "resume_node0", tmp / "resume_node1"]
    env = recipe_env(tmp)
    nodes = launch_nodes(folders, [*runs["args"], "--output_dir", str(out), "--hold_after_save"], env)
    try:
        kill_one_node_mid_run(nodes, folders, out)
    finally:
        for node in nodes:
            kill_node(node)

    folders = [tmp / "relaunch_node0", tmp / "relaunch_node1"]
    nodes = launch_nodes(folders, [*runs["args"], "--output_dir", str(out), "--resume_from_checkpoint", "latest"], env)
    check_success(nodes, folders)
    log = (folders[0] / "node0.log").read_text()  # steps 4 to 6 only: epoch 1 came from checkpoint-3
    assert "'epoch': '1.333'" in log and "'epoch': '0.3333'" not in log
    resumed = load_file(out / "model.safetensors")
    uninterrupted = load_file(runs["folders"][0] / "out" / "model.safetensors")
    assert max_difference(resumed, uninterrupted) <= TOLERANCE


def kill_one_node_mid_run(nodes: list[subprocess.Popen], folders: list[Path], out: Path) -> None:
    deadline = time.monotonic() + 400
    while (
        not (out / "checkpoint-3" / "trainer_state.json").is_file()
        or not (out / "checkpoint-3" / "rng_state_1.pth").is_file()
    ):
        assert time.monotonic() < deadline and nodes[0].poll() is None, (folders[0] / "node0.log").read_text()[-3000:]
        time.sleep(0.5)
    time.sleep(2)  # node 0 is now in step 4, waiting for node 1
    assert nodes[0].poll() is None and nodes[1].poll() is None
    kill_node(nodes[1])
    killed = time.monotonic()
    try:
        code = nodes[0].wait(timeout=EXIT_SECONDS)
    except subprocess.TimeoutExpired as error:
        kill_node(nodes[0])
        raise AssertionError(f"node 0 still runs {EXIT_SECONDS} s after node 1 died") from error
    print(f"node 0 exited {time.monotonic() - killed:.1f} s after node 1 was killed, with code {code}")
    assert code != 0 and "Connection closed by peer" in (folders[0] / "node0.log").read_text()  # gloo's error
    assert not (out / "checkpoint-6").exists() and not (out / "model.safetensors").exists()


# On each of 2 nodes x 2 processes: recipes/precompute_teacher.py's `main`, then what the Trainer does with a streamed
# training set under --accelerator_config '{"dispatch_batches": false}': the recipe's stream (`load_split`) in a
# DataLoader prepared by Accelerate; each process records the labels it read. One launch for both: they are
# independent, and each launch of 4 processes costs a minute on 2 loaded cores.
DATA_DRIVER = """
import json
import runpy
import sys
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from torch.utils.data import DataLoader
from gendd_hf.data import load_split

plan = json.loads(open(sys.argv[1]).read())
runpy.run_path(plan["precompute"])["main"](plan["precompute_args"])
accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(dispatch_batches=False))
read = {}
for layout in plan["layouts"]:
    stream = load_split(layout, "train", streaming=True).select_columns(["label"])
    loader = accelerator.prepare(DataLoader(stream, batch_size=2))
    read[layout] = [int(label) for batch in loader for label in batch["label"]]
with open(f"{plan['out']}/process{accelerator.process_index}.json", "w") as file:
    json.dump(read, file)
"""


def write_labelled_shards(root: Path, count: int = 4, rows: int = 3) -> list[Path]:
    """`count` parquet files and `count` webdataset tars of `rows` images each, every image of shard k labelled k."""
    image = PILImage.new("RGB", (8, 8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    (root / "parquet").mkdir(parents=True)
    (root / "wds").mkdir()
    features = Features(image=Image(), label=Value("int64"))
    for shard in range(count):
        rows_of_shard = {"image": [image] * rows, "label": [shard] * rows}
        Dataset.from_dict(rows_of_shard, features).to_parquet(root / "parquet" / f"train-{shard:05d}.parquet")
        with tarfile.open(root / "wds" / f"train-{shard:05d}.tar", "w") as tar:
            for row in range(rows):
                for extension, payload in (("jpg", buffer.getvalue()), ("cls", str(shard).encode())):
                    info = tarfile.TarInfo(f"{shard}_{row}.{extension}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    return [root / "parquet", root / "wds"]


@pytest.mark.slow
def test_precompute_and_streams_on_two_nodes_of_two_processes_split_the_shards(recipe_data, monkeypatch):
    """Teacher outputs: each of the 4 processes computes its own shards (k, k + 4, ...), process 0 then checks that
    every image id has exactly one row (`TeacherOutputs.check_ids`); the shards hold exactly what one process
    computes, so training from them is training from the one-process outputs. Streams (parquet, webdataset): each
    shard is read by exactly one process, every row once."""
    tmp, data = recipe_data
    args = [
        "--dataset_name",
        str(data["parquet"]),
        *teacher_args(data),
        "--image_size",
        "32",
        "--augmentation",
        "small",
        "--num_views",
        "2",
        "--shard_size",
        "5",
        "--batch_size",
        "8",
    ]
    layouts = [str(path) for path in write_labelled_shards(tmp / "shards")]
    (tmp / "stream_read").mkdir()
    plan = {
        "precompute": str(PRECOMPUTE),
        "precompute_args": [*args, "--output_dir", str(tmp / "nodes_outputs")],
        "layouts": layouts,
        "out": str(tmp / "stream_read"),
    }
    (tmp / "plan.json").write_text(json.dumps(plan))
    (tmp / "data_driver.py").write_text(DATA_DRIVER)
    folders = [tmp / "data_node0", tmp / "data_node1"]
    nodes = launch_nodes(folders, [str(tmp / "plan.json")], recipe_env(tmp), tmp / "data_driver.py", processes=2)
    check_success(nodes, folders)

    assert "24 images x 2 views of test_resnet" in (folders[0] / "node0.log").read_text()
    assert "images x 2 views" not in (folders[1] / "node1.log").read_text()  # only process 0 finalizes
    monkeypatch.setattr(sys, "argv", [str(PRECOMPUTE)])
    runpy.run_path(str(PRECOMPUTE))["main"]([*args, "--output_dir", str(tmp / "one_outputs")])
    TeacherOutputs.load(str(tmp / "nodes_outputs")).check_ids()
    names = sorted(path.name for path in (tmp / "one_outputs" / "data").iterdir())
    assert names == [f"train-{index:05d}.parquet" for index in range(5)]
    assert sorted(path.name for path in (tmp / "nodes_outputs" / "data").iterdir()) == names
    for name in names:
        one = pq.read_table(tmp / "one_outputs" / "data" / name)
        assert pq.read_table(tmp / "nodes_outputs" / "data" / name).equals(one), name

    reads = [json.loads((tmp / "stream_read" / f"process{rank}.json").read_text()) for rank in range(4)]
    for layout in layouts:
        # 4 shards of 3 rows over 4 processes: each process reads one whole shard
        assert sorted(sorted(read[layout]) for read in reads) == [[shard] * 3 for shard in range(4)], layout
