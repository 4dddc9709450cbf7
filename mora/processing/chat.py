"""Chat templates of the backbone families, built as token ids (placeholders inserted by id, never by
string, so their count is exact).

* ``vicuna_v1`` (LLaVA v1 / LISA): ``<s>SYSTEM USER: <video...><motion...>\\nQUESTION ASSISTANT: ANSWER</s>``
* ``chatml`` (Qwen): ``<|im_start|>system ... <|im_end|>\\n<|im_start|>user\\n<|vision_start|><video...>
  <|vision_end|><motion...>\\nQUESTION<|im_end|>\\n<|im_start|>assistant\\nANSWER<|im_end|>``; Qwen3-VL
  writes one ``<t seconds><|vision_start|><video...><|vision_end|>`` group per temporal patch
  (`video_ids`). The vision markers are used where the tokenizer has them.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
CHATML_SYSTEM = "You are a helpful assistant."
CHAT_TEMPLATES = ("vicuna_v1", "chatml")


class PromptTemplate:
    """Builds prompt and answer ids for one chat format."""

    def __init__(self, name: str, tokenizer: PreTrainedTokenizerBase) -> None:
        if name not in CHAT_TEMPLATES:
            raise ValueError(f"unknown chat template {name!r}; expected one of {CHAT_TEMPLATES}")
        self.name = name
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab()
        if name == "chatml":
            for marker in ("<|im_start|>", "<|im_end|>"):
                if marker not in vocab:
                    raise ValueError(f"the chatml template needs {marker!r} in the tokenizer")
            self.eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
            self._vision_wrap = [
                tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>")
            ]
            if any(t not in vocab for t in ("<|vision_start|>", "<|vision_end|>")):
                self._vision_wrap = []
        else:
            if tokenizer.eos_token_id is None:
                raise ValueError("the vicuna_v1 template needs a tokenizer with an eos token")
            self.eos_id = tokenizer.eos_token_id
            self._vision_wrap = []
        self._drop_on_decode = {
            i
            for i in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, self.eos_id)
            if i is not None
        }

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def video_ids(self, segments: Sequence[tuple[str | None, int]], video_id: int) -> list[int]:
        """The video part of the user turn: per segment (label, count) of `VisualLayout.video_segments`, the
        label's text ids (Qwen3-VL's timestamp), then ``count`` placeholders, inside the vision markers
        (chatml, where the tokenizer has them)."""
        ids: list[int] = []
        for label, count in segments:
            placeholders = [video_id] * count
            if self._vision_wrap:
                placeholders = [self._vision_wrap[0], *placeholders, self._vision_wrap[1]]
            ids += (self._ids(label) if label else []) + placeholders
        return ids

    def prompt_ids(
        self, visual_ids: Sequence[int], question: str, instruction: str = ""
    ) -> tuple[list[int], list[bool]]:
        """Ids up to and including the assistant turn marker, with ``visual_ids`` (`video_ids` followed by
        the motion placeholders) in the user turn, whose text is ``question`` then ``instruction``.

        Returns:
            the ids and, for each id, whether it is a token of ``question`` (what the `GroundingReader` reads
            when it reads the question's words only; from the fast tokenizer's character offsets).
        """
        visual = list(visual_ids)
        user = f"{question} {instruction}" if instruction else question
        if self.name == "vicuna_v1":
            bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
            head = bos + self._ids(f"{VICUNA_SYSTEM} USER: ")
            tail, flags = self._marked_ids(f"\n{user} ASSISTANT:", 1, 1 + len(question))
        else:
            head = self._ids(f"<|im_start|>system\n{CHATML_SYSTEM}<|im_end|>\n<|im_start|>user\n")
            tail, flags = self._marked_ids(
                f"\n{user}<|im_end|>\n<|im_start|>assistant\n", 1, 1 + len(question)
            )
        return head + visual + tail, [False] * (len(head) + len(visual)) + flags

    def _marked_ids(self, text: str, start: int, end: int) -> tuple[list[int], list[bool]]:
        """Ids of ``text`` and whether each token overlaps the characters ``[start, end)``."""
        if not self.tokenizer.is_fast:
            raise ValueError(
                f"MoRA's processor needs a fast tokenizer (character offsets of the question's tokens); "
                f"got {type(self.tokenizer).__name__}"
            )
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        flags = [a < end and b > start for a, b in encoded.offset_mapping]
        return encoded.input_ids, flags

    def answer_ids(self, answer: str) -> list[int]:
        """Ids of the assistant answer followed by the end-of-turn token."""
        text = f" {answer.strip()}" if self.name == "vicuna_v1" else answer.strip()
        return self._ids(text) + [self.eos_id]

    def decode(self, token_ids: Sequence[int]) -> str:
        kept = [int(i) for i in token_ids if int(i) not in self._drop_on_decode]
        return self.tokenizer.decode(kept, skip_special_tokens=False).strip()
