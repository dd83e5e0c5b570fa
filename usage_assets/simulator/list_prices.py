"""Published list prices of what the other usage endpoints measure, as the simulated bill
applies them: the simulator's own copy (the product's price file carries the same numbers
independently, so a typo in either shows up as a disagreement).

Sources: https://openai.com/api/pricing/ and https://platform.openai.com/docs/pricing
(embeddings, image generation, text-to-speech, Whisper, and the built-in tools: file search
storage and calls, code interpreter, web search). All amounts in USD.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Final

D = Decimal

#: USD per 1M input tokens (https://platform.openai.com/docs/pricing, "Embeddings").
EMBEDDINGS_PER_MTOK: Final[Mapping[str, Decimal]] = {
    "text-embedding-3-small": D("0.02"),
    "text-embedding-3-large": D("0.13"),
    "text-embedding-ada-002": D("0.10"),
}

# Moderations are free (https://platform.openai.com/docs/pricing, "Moderation"): no line item.

#: USD per image by (model, size), the same for generation, edits and variations
#: (https://openai.com/api/pricing/, "Image generation", standard quality).
IMAGES_PER_IMAGE: Final[Mapping[tuple[str, str], Decimal]] = {
    ("dall-e-3", "1024x1024"): D("0.040"),
    ("dall-e-3", "1024x1792"): D("0.080"),
    ("dall-e-2", "256x256"): D("0.016"),
    ("dall-e-2", "512x512"): D("0.018"),
    ("dall-e-2", "1024x1024"): D("0.020"),
}

#: USD per 1M characters of text-to-speech input (https://openai.com/api/pricing/, "Audio").
SPEECH_PER_MILLION_CHARACTERS: Final[Mapping[str, Decimal]] = {
    "tts-1": D(15),
    "tts-1-hd": D(30),
}

#: USD per minute of transcribed audio, billed on seconds / 60 without rounding
#: (https://openai.com/api/pricing/, "Whisper").
TRANSCRIPTION_PER_MINUTE: Final[Mapping[str, Decimal]] = {"whisper-1": D("0.006")}

#: Vector store storage: USD per GiB-day, the first GiB-day of each organization and day free
#: (https://platform.openai.com/docs/pricing, "Built-in tools", file search storage).
VECTOR_STORE_PER_GIB_DAY: Final = D("0.10")
VECTOR_STORE_FREE_GIB_DAYS: Final = D(1)

#: USD per code interpreter session (https://platform.openai.com/docs/pricing, "Built-in tools").
CODE_INTERPRETER_PER_SESSION: Final = D("0.03")

#: USD per 1,000 file search tool calls (https://platform.openai.com/docs/pricing,
#: "Built-in tools").
FILE_SEARCH_PER_1K_CALLS: Final = D("2.50")

#: USD per 1,000 web search tool calls by model family and search context size
#: (https://platform.openai.com/docs/pricing, "Built-in tools", web search preview); dated
#: snapshots share their model's price.
WEB_SEARCH_PER_1K_CALLS: Final[Mapping[tuple[str, str], Decimal]] = {
    ("gpt-4o", "low"): D(30),
    ("gpt-4o", "medium"): D(35),
    ("gpt-4o", "high"): D(50),
    ("gpt-4o-mini", "low"): D(25),
    ("gpt-4o-mini", "medium"): D("27.50"),
    ("gpt-4o-mini", "high"): D(30),
}
