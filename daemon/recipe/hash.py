"""The canonical form of a recipe: its hash, and its text that loads to the same hash.

This module owns ``HASH_DOMAIN`` (the one name of the hash format), the normalized
content of a recipe (defaults made explicit, ``2.0`` -> ``2``), the sha256 a batch pins
the recipe by, and ``dump_recipe``. Spacing, key order and comments never change the
hash; any change of the process does. ``approval`` is not part of it (domain v2,
decision 0084): approval is a record the daemon holds by hash (``daemon.lifecycle``),
so approving a recipe does not change what is approved. ``pinned_hashes`` gives every
hash a text has had (v2, then v1, which covered ``approval``): a batch pinned before the
domain changed still finds its recipe. The checker guarantees that every number it hashes
is finite (JSON has no NaN), so hashing a validated document cannot fail.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final, Protocol

import yaml

from daemon.recipe.models import RecipeDoc

HASH_DOMAIN: Final = "cellfab-recipe-v2"
# every domain a pinned hash may be in, newest first; v1 covered ``approval``
HASH_FORMS: Final = (HASH_DOMAIN, "cellfab-recipe-v1")
NOT_HASHED: Final[dict[str, frozenset[str]]] = {
    "cellfab-recipe-v2": frozenset({"approval"}),
    "cellfab-recipe-v1": frozenset(),
}


class _HasDoc(Protocol):
    @property
    def doc(self) -> RecipeDoc: ...


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def canonical_content(doc: RecipeDoc) -> dict[str, Any]:
    """The normalized content of a recipe: defaults made explicit, numbers 2.0 -> 2."""
    return _normalize(doc.model_dump(mode="json", by_alias=True))


def canonical_hash(doc: RecipeDoc, domain: str = HASH_DOMAIN) -> str:
    """sha256 over the canonical JSON (sorted keys, no spaces) of the normalized content
    (less what ``domain`` does not hash)."""
    content = {k: v for k, v in canonical_content(doc).items() if k not in NOT_HASHED[domain]}
    text = json.dumps(
        {"format": domain, "recipe": content},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pinned_hashes(doc: RecipeDoc) -> tuple[str, ...]:
    """The recipe's hash in every domain of ``HASH_FORMS`` (current first)."""
    return tuple(canonical_hash(doc, domain) for domain in HASH_FORMS)


def dump_recipe(recipe: _HasDoc | RecipeDoc) -> str:
    """YAML text of a recipe (defaults left out); loading it gives the same hash."""
    doc = recipe if isinstance(recipe, RecipeDoc) else recipe.doc
    data = doc.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
