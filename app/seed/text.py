"""Made-up contact-form messages: multilingual, with quotes, newlines and emoji, rarely repeating.

Realistic enough that archives of the demo data compress as real ones would.
"""
from __future__ import annotations

import functools
import random

from .vocabulary import CJK_CHARACTERS, EMOJI, GREETINGS, MESSAGE_PIECES, SIGN_OFFS, WORDS

MAX_MESSAGE_LENGTH = 2000
MIN_MESSAGE_LENGTH = 200


# Sentences are windows into these fixed streams: one random draw per sentence
# instead of one per word keeps a million-row seed fast, and windows starting
# anywhere in ~400 KB of text rarely repeat within a compressor's reach.
# Built on first use, not at import: every app start imports this module.
@functools.cache
def _text_streams() -> tuple[list[str], str]:
    words = random.Random(0).choices(WORDS, k=60_000)
    characters = "".join(random.Random(1).choices(CJK_CHARACTERS, k=60_000))
    return words, characters


def _sentence(rng: random.Random) -> str:
    """A made-up sentence: mostly English words, sometimes CJK, now and then quotes or an emoji."""
    word_stream, cjk_stream = _text_streams()
    if rng.random() < 0.1:
        start = rng.randrange(len(cjk_stream) - 40)
        sentence = cjk_stream[start:start + 8 + int(rng.random() * 33)] + rng.choice("。？！")
    else:
        start = rng.randrange(len(word_stream) - 24)
        words = word_stream[start:start + 5 + int(rng.random() * 20)]
        if rng.random() < 0.15:
            quoted = int(rng.random() * len(words))
            words[quoted] = '"' + words[quoted]
            words[-1] += '"'
        sentence = " ".join(words)
        sentence = sentence[0].upper() + sentence[1:] + rng.choice("..?!")
    if rng.random() < 0.12:
        sentence += " " + rng.choice(EMOJI)
    return sentence


def contact_message(rng: random.Random, name: str) -> str:
    """A contact-form message of 200–2,000 characters: greeting, multilingual paragraphs, sign-off."""
    greeting = rng.choice(GREETINGS)
    sign_off = f"\n\n{rng.choice(SIGN_OFFS)}\n{name}"
    room = MAX_MESSAGE_LENGTH - len(sign_off)
    # Skewed towards shorter messages, as real contact forms are.
    target = MIN_MESSAGE_LENGTH + int((room - MIN_MESSAGE_LENGTH) * rng.random() ** 1.5)
    parts = [greeting]
    length = len(greeting)
    separator = "\n\n"
    while length < target:
        piece = rng.choice(MESSAGE_PIECES) if rng.random() < 0.35 else _sentence(rng)
        if length + len(separator) + len(piece) > room:
            break  # already far past MIN_MESSAGE_LENGTH: no piece is that long
        parts += (separator, piece)
        length += len(separator) + len(piece)
        separator = "\n\n" if rng.random() < 0.2 else ("\n" if rng.random() < 0.1 else " ")
    parts.append(sign_off)
    return "".join(parts)
