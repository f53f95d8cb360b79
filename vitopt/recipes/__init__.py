"""Recipes shipped with vitopt (``recipes/`` in the repository links here), found by name."""

from __future__ import annotations

from pathlib import Path

from vitopt.errors import RecipeError, did_you_mean
from vitopt.recipe import Recipe, load_recipe, parse_recipe

SHIPPED_DIR = Path(__file__).resolve().parent
DEFAULT_RECIPE = "default"  # reparam first, so no artifact ships a foldable BatchNorm


def shipped_recipes() -> list[str]:
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def resolve_recipe(*, recipe: str | None, targets: list[str] | None = None,
                   threads: int | None = None) -> Recipe:  # fmt: skip
    """A recipe from a path or a shipped name (default ``default``), with CLI overrides."""
    loaded = load_recipe(path=_recipe_path(recipe or DEFAULT_RECIPE))
    if targets:
        loaded = loaded.with_targets(targets)
    if threads is not None:
        bench = {**loaded.bench.model_dump(), "threads": threads}
        loaded = parse_recipe({**loaded.model_dump(), "bench": bench}, source="--threads")
    return loaded


def _recipe_path(recipe: str) -> Path:
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = SHIPPED_DIR / f"{recipe}.yaml"
    if shipped.is_file():
        return shipped
    hint = did_you_mean(recipe, shipped_recipes()) or f"shipped recipes: {', '.join(shipped_recipes())}"
    raise RecipeError(f"recipe {recipe!r} is neither a file nor a shipped recipe", hint=hint)
