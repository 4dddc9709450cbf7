"""Tokenizers for MoRA: the special tokens every backbone needs, and an offline tiny tokenizer.

`add_mora_tokens` adds ``[SEG]``, ``[LOC]`` and the two visual placeholders to any tokenizer as special
tokens (so they are never split) and returns their ids via ``convert_tokens_to_ids`` (LISA issue #55:
never take "the first id of tokenizing '[SEG]'").

`build_tiny_tokenizer` trains a byte-level BPE on a small built-in corpus (prompt templates, motion,
colour, shape and direction words, common English) in-process, deterministically, for tests and the
tiny presets: no download is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from mora.constants import (
    ANSWER_NO_SPAN,
    ANSWER_WITH_SPAN,
    LOC_TOKEN,
    SEG_TOKEN,
    SPATIOTEMPORAL_INSTRUCTION,
    VIDEO_TOKEN,
)
from mora.data.synthetic_questions import question_templates
from mora.processing.chat import CHATML_SYSTEM, VICUNA_SYSTEM

MOTION_TOKEN = "<motion>"  # placeholder expanded to the motion (frame-difference) tokens
MORA_SPECIAL_TOKENS = (SEG_TOKEN, LOC_TOKEN, VIDEO_TOKEN, MOTION_TOKEN)

# Chat-format tokens of the tiny tokenizer (ChatML markers so the Qwen template works offline too).
_TINY_BASE_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>")

_COLOURS = "red green blue yellow orange purple pink white black gray grey brown cyan magenta"
_SHAPES = "circle square triangle ball box cube disc star rectangle diamond object objects thing shape"
_MOTIONS = (
    "move moves moved moving motion movement roll rolls rolled rolling slide slides sliding bounce bounces "
    "jump jumps fall falls falling rise rises stop stops stopped start starts started turn turns rotate "
    "rotates spin spins push pushes pushed pull hit hits hitting collide collides chase chases follow "
    "follows approach approaches leave leaves enter enters cross crosses stay stays still static fast slow"
)
_DIRECTIONS = (
    "left right up down upward downward upwards downwards top bottom center middle toward towards away "
    "from into onto across along around over under above below before after while then first last next"
)
_ENGLISH = (
    "the a an is are was were be been which what who where when why how that this these those it its of in "
    "on at to and or not no yes with without by for as if than so do does did can could would should will "
    "please output segment segmentation mask masks answer question video frame frames image clip scene "
    "object target temporal spatial boundary sure according both clues spatiotemporal result other another "
    "one two three same different only also there here time happen happens happened because cause caused "
    "made make makes if had has have other side edge wall table floor ground system user assistant you "
    "i me my your we they them he she his her a chat between curious human artificial intelligence "
    "helpful detailed polite answers to questions"
)


_REPEAT = 50


def _tiny_corpus() -> list[str]:
    """Lines the tiny BPE is trained on; fixed order keeps the result deterministic."""
    # Fixed chat text is repeated so that BPE merges it into few tokens (short sequences on CPU).
    fixed = [VICUNA_SYSTEM + " USER:", "ASSISTANT:", f"system\n{CHATML_SYSTEM}", "user\n", "assistant\n"]
    lines = [SPATIOTEMPORAL_INSTRUCTION, ANSWER_WITH_SPAN, ANSWER_NO_SPAN] * _REPEAT + fixed * _REPEAT
    for words in (_COLOURS, _SHAPES, _MOTIONS, _DIRECTIONS, _ENGLISH):
        lines.append(words)
        lines.extend(f"The {w}." for w in words.split())
    for colour in _COLOURS.split():
        for shape in _SHAPES.split()[:8]:
            lines.append(f"Which object moves left? The {colour} {shape} moves right before the other one.")
            # the synthetic dataset's questions, so that they tokenise into whole words
            lines.extend(t.format(x=f"{colour} {shape}") for t in question_templates())
    lines.append("USER: ASSISTANT: What is Which Who Where When Why How Sure It")
    return lines


def build_tiny_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A deterministic byte-level BPE tokenizer (about ``vocab_size`` entries) with MoRA's special tokens.

    Uses ``<s>``/``</s>``/``<pad>`` as bos/eos/pad and carries the ChatML markers and ``[SEG]``,
    ``[LOC]``, ``<video>``, ``<motion>`` as special tokens.
    """
    specials = [*_TINY_BASE_SPECIALS, *MORA_SPECIAL_TOKENS]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tiny_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.add_tokens(list(MORA_SPECIAL_TOKENS), special_tokens=True)
    return fast


@dataclass(frozen=True)
class MoRATokenIds:
    """Ids of MoRA's special tokens in one tokenizer."""

    seg: int
    loc: int
    video: int
    motion: int
    pad: int
    eos: int


def add_mora_tokens(tokenizer: PreTrainedTokenizerBase) -> MoRATokenIds:
    """Add MoRA's special tokens (if missing) and return their ids.

    A pad token is set to eos when the tokenizer has none (Llama tokenizers).
    """
    missing = [t for t in MORA_SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in MORA_SPECIAL_TOKENS}
    for token, idx in ids.items():
        if idx is None or idx == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer could not register special token {token!r}")
    return MoRATokenIds(
        seg=ids[SEG_TOKEN],
        loc=ids[LOC_TOKEN],
        video=ids[VIDEO_TOKEN],
        motion=ids[MOTION_TOKEN],
        pad=tokenizer.pad_token_id,
        eos=tokenizer.eos_token_id,
    )
