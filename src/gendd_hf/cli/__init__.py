"""What the scripts of `recipes/` are made of: their command line (`arguments`), the paper's experiments as presets
(`presets`) and the run itself (`run`). A recipe script is its defaults and one call to [`recipe_main`]."""

from .arguments import (
    EvaluateArguments,
    RecipeArguments,
    check_image_size,
    format_recipe_help,
    parse_json_dict,
    parse_recipe_args,
    recipe_parser,
)
from .output_lock import OutputDirLock
from .presets import IMAGENET_RECIPES, PRESETS, get_preset
from .run import evaluate_folder, load_recipe_datasets, recipe_main, recipe_metrics, run_recipe, saved_model_noted


__all__ = [
    "IMAGENET_RECIPES",
    "PRESETS",
    "EvaluateArguments",
    "OutputDirLock",
    "RecipeArguments",
    "check_image_size",
    "evaluate_folder",
    "format_recipe_help",
    "get_preset",
    "load_recipe_datasets",
    "parse_json_dict",
    "parse_recipe_args",
    "recipe_main",
    "recipe_metrics",
    "recipe_parser",
    "run_recipe",
    "saved_model_noted",
]
