"""The JSON Schema of a recipe file, generated from the pydantic models.

This module owns what ``recipes/schema.json`` holds (``schema_text``, byte for byte;
a test keeps the file in step) so editors complete and mark keys as the loader reads
them. The ICD ranges, graph rules and guard types are beyond a schema: the loader
checks those (``daemon.recipe.check``).
"""

from __future__ import annotations

import json
from typing import Any

from daemon.recipe.models import RecipeDoc


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a recipe file (what recipes/schema.json holds)."""
    schema = RecipeDoc.model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    """The JSON Schema exactly as recipes/schema.json holds it."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
