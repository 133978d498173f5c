"""A checkpoint's model card: its Markdown for the About tab and what it says the model was trained on.

The card is the `README.md` next to `model_index.json`, with the Hugging Face
Hub's YAML front matter. OMFA reads one field of it, `training_data`:

    ---
    training_data:
      kind: renders          # "renders" (synthetic people) or "photos" (real photographs)
      description: the project's synthetic fitting room (rendered mannequins, procedural garments)
    ---

The studio compares each upload with it (`omfa.studio.runs`): a real photo given
to a model trained on renders gets a notice next to its result. A card without
the field makes no claim, and no such notice is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

CARD_NAME = "README.md"
TRAINING_KINDS = ("renders", "photos")


class ModelCardError(ValueError):
    """A model card whose front matter cannot be read; the message names the field and the fix."""


@dataclass(frozen=True)
class ModelCard:
    """What the About tab shows and what the runs compare uploads with.

    Attributes:
        markdown: the card without its front matter.
        training_kind: "renders", "photos", or None when the card does not say.
        training_description: the training data in words (for notices), "" when not given.
    """

    markdown: str
    training_kind: str | None = None
    training_description: str = ""

    @property
    def trained_on_renders(self) -> bool:
        return self.training_kind == "renders"

    @classmethod
    def parse(cls, text: str) -> ModelCard:
        """A card from its text (front matter optional)."""
        meta, markdown = split_front_matter(text)
        data = meta.get("training_data") or {}
        if not isinstance(data, dict):
            raise ModelCardError(f"training_data is {data!r}; write it as a mapping with 'kind' and 'description'")
        kind = data.get("kind")
        if kind is not None and kind not in TRAINING_KINDS:
            raise ModelCardError(f"training_data.kind is {kind!r}; use one of {', '.join(TRAINING_KINDS)}")
        return cls(markdown, kind, str(data.get("description") or "").strip())

    @classmethod
    def read(cls, folder: str | Path) -> ModelCard | None:
        """The card of a checkpoint folder, or None when it has none."""
        path = Path(folder) / CARD_NAME
        return cls.parse(path.read_text(encoding="utf-8")) if path.is_file() else None


def split_front_matter(text: str) -> tuple[dict, str]:
    """(the YAML front matter as a dict, the Markdown after it); ({}, text) without front matter."""
    text = text.strip()
    if not text.startswith("---"):
        return {}, text
    end = text.find("\n---", 3)
    if end == -1:
        return {}, text
    try:
        meta = yaml.safe_load(text[3:end]) or {}
    except yaml.YAMLError as error:
        raise ModelCardError(f"the model card's front matter is not valid YAML ({error})") from None
    if not isinstance(meta, dict):
        raise ModelCardError("the model card's front matter is not a mapping of fields")
    return meta, text[end + 4 :].strip()
