"""Every command that README.md and docs/*.md show runs as written after the README's set-up.

The commands are read from the documents themselves (shell code blocks, and inline code spans of prose): each
`python recipes/...`, `python -m gendd_hf...` and `accelerate launch ...`. For each, the script or module must exist
and its flags must parse (`accelerate launch`'s own with accelerate's parser, then the script's), up to the point
where it would start its work: nothing trains. Placeholders of prose (`[--flag VALUE]`, `A [B C]`, `...`) are read as
the flags they stand for. `tests/test_cpu_command.py` runs the CPU command of docs/recipes.md for real; the README's
five lines of Python run here, offline, on a tiny student saved where `make demo` saves its own.
"""

import argparse
import ast
import os
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers.training_args
from accelerate.commands.launch import launch_command_parser
from transformers import HfArgumentParser

from gendd_hf import GenDDForImageClassification
from gendd_hf.data import FASHION_MNIST_LABEL_NAMES
from helpers import tiny_config


ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ACTIVATE = "source .venv/bin/activate"
FENCE = re.compile(r"^\s*```(\w*)\s*$")
INLINE = re.compile(r"`([^`]+)`")


def is_command(tokens: list[str]) -> bool:
    if tokens[:2] == ["accelerate", "launch"]:
        return len(tokens) > 2  # alone, the tool's name in prose
    if len(tokens) < 2 or tokens[0] not in ("python", "python3", ".venv/bin/python"):
        return False
    return (
        tokens[1] == "-m" and tokens[2:3] != [] and tokens[2].startswith("gendd_hf") or tokens[1].startswith("recipes/")
    )


def shell_tokens(command: str) -> list[str]:
    """The words of `command` without its comment; the brackets and ellipses of prose placeholders dropped."""
    words = shlex.split(command.replace("[", " ").replace("]", " "), comments=True)
    return [word for word in words if word not in ("...", "…")]


def documented_commands() -> list[tuple[str, list[str]]]:
    """`(where, tokens)` of every command of the documents, `where` as `file:line`. A code span of prose may run over
    a line break, as wrapped paragraphs have them."""
    commands = []

    def add(where: str, command: str) -> None:
        tokens = shell_tokens(command)
        if tokens and is_command(tokens):
            commands.append((where, tokens))

    for document in DOCUMENTS:
        fence, pending, start, paragraph = None, "", 0, []
        for number, line in enumerate([*document.read_text().splitlines(), ""], 1):
            opened = FENCE.match(line)
            if fence is None and (opened or not line.strip()):  # the end of a paragraph of prose
                text = "\n".join(text for _, text in paragraph)
                for span in INLINE.finditer(text):
                    add(f"{document.name}:{paragraph[0][0] + text.count(chr(10), 0, span.start())}", span.group(1))
                paragraph = []
            if opened:
                fence = None if fence is not None else opened.group(1) or "sh"
            elif fence in ("bash", "sh", "shell", "console"):
                start = start if pending else number
                pending += line.rstrip().removesuffix("\\") + " "
                if not line.rstrip().endswith("\\"):
                    add(f"{document.name}:{start}", pending)
                    pending = ""
            elif fence is None and line.strip():
                paragraph.append((number, line))
    return commands


COMMANDS = documented_commands()


class Parsed(Exception):
    """Raised once a command's arguments are parsed: where its work would start."""


@pytest.fixture
def parse_only(monkeypatch):
    """Every argument parser stops the program once it has parsed (and validated) the arguments. GPU commands are
    parsed as on a GPU: `--bf16` is accepted where torch sees none."""
    parse_args, parse_dataclasses = argparse.ArgumentParser.parse_args, HfArgumentParser.parse_args_into_dataclasses

    def stop_after(parse):
        def parse_then_stop(self, *args, **kwargs):
            parse(self, *args, **kwargs)
            raise Parsed

        return parse_then_stop

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop_after(parse_args))
    monkeypatch.setattr(HfArgumentParser, "parse_args_into_dataclasses", stop_after(parse_dataclasses))
    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda *args, **kwargs: True)
    monkeypatch.chdir(ROOT)
    return parse_args


def test_the_documents_show_the_commands_of_every_kind():
    kinds = {tokens[0] if tokens[0] == "accelerate" else tokens[1][:3] for _, tokens in COMMANDS}
    assert kinds == {"accelerate", "rec", "-m"}, kinds
    assert len(COMMANDS) > 30


def test_the_readme_says_how_to_use_the_venv_before_its_first_command():
    lines = (ROOT / "README.md").read_text().splitlines()
    activate = next(number for number, line in enumerate(lines, 1) if ACTIVATE in line)
    first = min(int(where.split(":")[1]) for where, _ in COMMANDS if where.startswith("README.md:"))
    assert any("make install" in line for line in lines[:activate]) and activate < first, (activate, first)


@pytest.mark.parametrize("where, tokens", COMMANDS, ids=[where for where, _ in COMMANDS])
@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")  # -m, run again
def test_a_documented_command_exists_and_its_flags_parse(where, tokens, parse_only, monkeypatch):
    if tokens[0] == "accelerate":
        launch = parse_only(launch_command_parser(), tokens[2:])
        if launch.config_file:
            assert (ROOT / launch.config_file).is_file(), f"{where}: no accelerate config {launch.config_file}"
        program = [launch.training_script, *launch.training_script_args]
        if launch.module:
            program = ["-m", *program]
    else:
        program = tokens[1:]
    if program[0] == "-m":
        module, argv = program[1], program[2:]
        run = lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)  # noqa: E731
    else:
        script, argv = ROOT / program[0], program[1:]
        assert script.is_file(), f"{where}: {program[0]} does not exist"
        run = lambda: runpy.run_path(str(script), run_name="__main__")  # noqa: E731
    monkeypatch.setattr(sys, "argv", [program[0] if program[0] != "-m" else program[1], *argv])
    try:
        run()
    except Parsed:
        return
    except SystemExit as exit:  # --help, --list-presets; an argparse error exits with 2
        assert exit.code in (0, None), f"{where}: {shlex.join(tokens)} exits with {exit.code}"
        return
    raise AssertionError(f"{where}: {shlex.join(tokens)} ran without parsing its arguments")


def test_the_readmes_python_runs_offline_on_the_demos_student(tmp_path):
    """The README's five lines, in a fresh offline process, on a student saved as `make demo` saves it (a tiny one:
    the lines, not the demo's accuracy, are under test); they read Debian's Fashion-MNIST (`make data`)."""
    model = GenDDForImageClassification(tiny_config(id2label=dict(enumerate(FASHION_MNIST_LABEL_NAMES))))
    model.set_teacher_classifier(torch.randn(10, 32), torch.randn(10))
    model.config.pretrained_cfg = {
        "input_size": (1, 28, 28),
        "mean": (0.286,),
        "std": (0.353,),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "crop_mode": "center",
    }
    model.save_pretrained(tmp_path / "outputs" / "demo" / "gendd-student")
    readme = (ROOT / "README.md").read_text().split("## Five lines of Python", 1)[1]
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 6 and "pretrained=True" not in code
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    answers = [ast.literal_eval(line) for line in result.stdout.splitlines()]
    assert len(answers) == 3 and all(answer["label"] in FASHION_MNIST_LABEL_NAMES for answer in answers), answers
