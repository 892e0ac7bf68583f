"""Named, documented sets of hyperparameters: ``gatedrnn train --recipe NAME``, ``compare --recipe NAME``.

    recipe = load_recipe("mogrifier-char")      # Recipe(name, settings, compare, description, path)
    names = recipe_names()                      # every recipe shipped in gatedrnn/recipes/*.toml

A recipe is a TOML file: top-level keys are ``gatedrnn train``'s settings under their flag names
with ``_`` for ``-`` (``hidden_size``, ``rounds``, ``dropout_state``, ``seq_len``, ``beta1``, ...);
an optional ``[compare]`` table holds what only ``gatedrnn compare`` uses (``cells``, ``seeds``,
``match_params``, ``reference``, ``eval_every``). The comments in each file say where each value
comes from. A flag given on the command line always wins over the recipe.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

RECIPE_DIR = Path(__file__).resolve().parent.parent / "recipes"

#: keys a recipe may set, besides those of the train command's flags (checked by the CLI)
COMPARE_KEYS = ("cells", "seeds", "match_params", "reference", "eval_every", "steps")


class RecipeError(ValueError):
    """An unknown recipe or a malformed file: one line for the user."""


@dataclass
class Recipe:
    name: str
    settings: dict  # train settings, flag names with underscores
    compare: dict = field(default_factory=dict)
    description: str = ""
    path: Path | None = None


def recipe_names(directory: Path = RECIPE_DIR) -> list[str]:
    return sorted(p.stem for p in Path(directory).glob("*.toml"))


def load_recipe(name: str, directory: Path = RECIPE_DIR) -> Recipe:
    """The recipe called ``name``, or a path to a recipe file of one's own."""
    path = Path(name)
    if not (path.suffix == ".toml" and path.is_file()):
        path = Path(directory) / f"{name}.toml"
    if not path.is_file():
        raise RecipeError(f"unknown recipe {name!r}: expected one of {', '.join(recipe_names(directory))} "
                          "(or a path to a .toml file)")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"recipe {path} is not valid TOML: {err}") from None
    compare = doc.pop("compare", {})
    if not isinstance(compare, dict):
        raise RecipeError(f"recipe {path}: [compare] must be a table, got {type(compare).__name__}")
    unknown = sorted(set(compare) - set(COMPARE_KEYS))
    if unknown:
        raise RecipeError(f"recipe {path}: unknown [compare] keys {unknown}; expected some of {list(COMPARE_KEYS)}")
    description = str(doc.pop("description", ""))
    nested = sorted(k for k, v in doc.items() if isinstance(v, dict))
    if nested:
        raise RecipeError(f"recipe {path}: unexpected tables {nested}; only [compare] is known")
    return Recipe(name=path.stem, settings=doc, compare=compare, description=description, path=path)


def check_keys(recipe: Recipe, known) -> None:
    """Every setting of ``recipe`` is one of ``known`` (a typo must not pass silently)."""
    unknown = sorted(set(recipe.settings) - set(known))
    if unknown:
        raise RecipeError(f"recipe {recipe.name}: unknown settings {unknown}; expected some of {sorted(known)}")


__all__ = ["Recipe", "RecipeError", "load_recipe", "recipe_names", "check_keys", "RECIPE_DIR"]
