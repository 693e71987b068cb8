"""`--help` of the training recipes: GenDD's own flags first, then every other flag, printed without importing torch;
with `--recipe` / `--preset`, with their defaults.

The scripts print `recipes/help/<script>.txt`, which must be `format_recipe_help`'s text for their defaults:
`GENDD_HF_UPDATE_HELP=1 pytest tests/test_recipe_help.py` rewrites the files after a change of flags or defaults.
"""

import importlib
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gendd_hf.cli import IMAGENET_RECIPES, format_recipe_help, parse_recipe_args, recipe_parser


ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SCRIPTS = {  # script -> its --recipe choices
    "train_imagenet.py": IMAGENET_RECIPES,
    "train_cifar100.py": None,
    "train_cc3m_unsupervised.py": None,
    "train_teacher.py": None,
}
# In the order of the help: method and stage, teacher, student and head, sampling, data.
GENDD_FLAGS = [
    "--preset",
    "--method",
    "--stage",
    "--teacher_name",
    "--teacher_checkpoint",
    "--student_name",
    "--token_dim",
    "--head_width",
    "--contraction",
    "--sampler",
    "--num_inference_steps",
    "--dataset_name",
]
# Generous, for a loaded 2-core machine: the help itself takes about 0.1 s, importing torch alone 2 s or more.
HELP_SECONDS = 15


def help_text(script: str) -> str:
    defaults = runpy.run_path(str(RECIPES / script))["DEFAULTS"]
    return format_recipe_help(recipe_parser(defaults, SCRIPTS[script]), script)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_stored_help_is_the_recipes_help(script):
    stored = RECIPES / "help" / f"{Path(script).stem}.txt"
    if os.environ.get("GENDD_HF_UPDATE_HELP"):
        stored.write_text(help_text(script))
    assert stored.read_text() == help_text(script), (
        f"{stored} is out of date: rewrite it with GENDD_HF_UPDATE_HELP=1 pytest tests/test_recipe_help.py"
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_leads_with_the_gendd_flags_and_imports_no_torch(script):
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(RECIPES / script), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == (RECIPES / "help" / f"{Path(script).stem}.txt").read_text()
    positions = [result.stdout.index(f"\n  {flag} ") for flag in GENDD_FLAGS]
    assert positions == sorted(positions)
    rest = result.stdout.index("\ntraining (transformers' TrainingArguments")
    assert positions[-1] < rest < result.stdout.index("\n  --learning_rate LEARNING_RATE ")
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "transformers", "timm", "datasets", "gendd_hf"}
    assert seconds < HELP_SECONDS, seconds


def test_help_lists_every_flag_once_with_the_layered_defaults(capsys):
    defaults = runpy.run_path(str(RECIPES / "train_imagenet.py"))["DEFAULTS"]
    with pytest.raises(SystemExit) as exit_info:
        parse_recipe_args(["--recipe", "a1", "--help"], defaults, IMAGENET_RECIPES, script="train_imagenet.py")
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    parser = recipe_parser(defaults, IMAGENET_RECIPES)
    for action in parser._actions:
        if action.dest != "help":
            assert text.count(f"\n  {action.option_strings[0]} ") == 1, action.option_strings[0]
    gendd, rest = text.split("\nother recipe flags", 1)
    assert all(f"\n  {flag} " in gendd for flag in GENDD_FLAGS) and "--learning_rate" not in gendd
    for flag, default in (
        ("--learning_rate", "0.002"),
        ("--mixup_alpha", "0.2"),
        ("--num_train_epochs", "600"),
        ("--dataloader_num_workers", "8"),
    ):  # the script's, then --recipe a1's
        entry = rest.split(f"\n  {flag} ", 1)[1].split("\n  --", 1)[0]
        assert f"(default: {default})" in " ".join(entry.split()), (flag, entry)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_plain_help_shows_what_a_plain_run_uses(script, tmp_path):
    """Every default that the stored `--help` prints is the value a run without flags parses to (train_imagenet.py:
    the default `--recipe regular`'s 100 epochs, not the Trainer's 3.0)."""
    defaults = runpy.run_path(str(RECIPES / script))["DEFAULTS"]
    recipe_args, training_args = parse_recipe_args(["--output_dir", str(tmp_path)], defaults, SCRIPTS[script])
    parsed = {**vars(training_args), **vars(recipe_args)}
    text = (RECIPES / "help" / f"{Path(script).stem}.txt").read_text()
    checked = 0
    for action in recipe_parser(defaults, SCRIPTS[script])._actions:
        value = getattr(parsed.get(action.dest), "value", parsed.get(action.dest))  # an enum by its value
        if action.dest == "output_dir" or not isinstance(value, (int, float, str)) or isinstance(value, bool):
            continue
        shown = " ".join(text.split(f"\n  {action.option_strings[0]} ", 1)[1].split("\n  --", 1)[0].split())
        assert f"(default: {value})" in shown, (action.option_strings[0], value, shown)
        checked += 1
    assert checked > 40
    if SCRIPTS[script]:
        assert training_args.num_train_epochs == SCRIPTS[script][next(iter(SCRIPTS[script]))]["num_train_epochs"]


# ---- every other entry point users run: two recipes and the `python -m gendd_hf.<module>` scripts
PACKAGE = ROOT / "src" / "gendd_hf"
MODULES = sorted(  # the modules that run as `python -m`
    ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    for path in PACKAGE.rglob("*.py")
    if 'if __name__ == "__main__":' in path.read_text()
)
ENTRY_POINTS = {  # entry point -> (its file, its stored help, the command that runs it)
    **{
        script: (RECIPES / script, RECIPES / "help" / f"{Path(script).stem}.txt", [str(RECIPES / script)])
        for script in ("evaluate_model.py", "precompute_teacher.py")
    },
    **{
        module: (
            ROOT / "src" / Path(*module.split(".")).with_suffix(".py"),
            PACKAGE / "help" / f"{module}.txt",
            ["-m", module],
        )
        for module in MODULES
    },
}


def live_help(entry_point: str, monkeypatch, capsys) -> str:
    """What the entry point's own parser prints for --help, at a fixed width (`main(["--help"])` in this process)."""
    path, _, _ = ENTRY_POINTS[entry_point]
    monkeypatch.setenv("COLUMNS", "110")
    monkeypatch.setattr(sys, "argv", [str(path)])  # argparse's prog: the file name, as when it runs
    main = runpy.run_path(str(path))["main"] if path.parent == RECIPES else importlib.import_module(entry_point).main
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_the_entry_points_are_found():
    assert {"gendd_hf.one_pass", "gendd_hf.bench.fashion_mnist", "gendd_hf.bench.serving"} <= set(MODULES)


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_the_stored_help_of_every_entry_point_is_its_help(entry_point, monkeypatch, capsys):
    stored = ENTRY_POINTS[entry_point][1]
    text = live_help(entry_point, monkeypatch, capsys)
    if os.environ.get("GENDD_HF_UPDATE_HELP"):
        stored.parent.mkdir(exist_ok=True)
        stored.write_text(text)
    assert stored.is_file() and stored.read_text() == text, (
        f"{stored} is out of date: rewrite it with GENDD_HF_UPDATE_HELP=1 pytest tests/test_recipe_help.py"
    )


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_every_entry_point_prints_its_help_without_importing_torch(entry_point):
    """Before: each imported torch, transformers and timm first (3 s or more here, under load much more)."""
    _, stored, command = ENTRY_POINTS[entry_point]
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == stored.read_text()
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "transformers", "timm", "datasets"}
    assert seconds < HELP_SECONDS, seconds
