"""Stage 5 backends: rule-based (offline, the default), an OpenAI-compatible HTTP client and a local
transformers model. LLM backends get the clip's facts as JSON and must answer with JSON QAs carrying
claims (see qa.py); whatever they return goes through ``qa.verify`` like the rule-based output.

The HTTP client reads the API key from the environment variable ``qa.openai.api_key_env`` at call time;
the key is sent in the Authorization header only, never logged, cached or written. Retries with
exponential backoff on 429, 5xx and connection errors; a per-process rate limit; an on-disk cache of
responses keyed by the SHA-256 of the request body (model, messages, sampling settings).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from data_prep.foundation_motion.config import PipelineConfig
from data_prep.foundation_motion.facts import ClipFacts
from data_prep.foundation_motion.qa import GROUNDMORE_TYPES, MC_TYPES, QA, rule_based_qas
from mora.utils.io import write_json_atomic
from mora.utils.logging import get_logger

logger = get_logger("data_prep.foundation_motion")

SYSTEM_PROMPT = (
    "You write training questions about object motion in a video from tracked trajectory facts. "
    'Use only the facts given. Answer with a JSON object {"qas": [...]}; each QA has: question, answer, '
    "q_type (one of " + ", ".join(GROUNDMORE_TYPES + MC_TYPES) + "), obj_id (the answer object), span "
    "([start, end] = one of that object's motion spans, or null), choices (list or null), correct_choice "
    "(letter or null) and claims: the facts that make it true, as objects with kind in direction, "
    "unique_direction, static, moving, only_mover, starts_after, pushes, first_to_move, repetitions, "
    "end_region, fastest, relative_position and the fields obj/first/second/pusher/pushed/ref/direction/"
    "count/region/relation. Answers that name an object must contain its name."
)


PROPOSAL_PROMPT = (
    "List the distinct physical objects visible in this image that move or could move, excluding people "
    'and hands, as short noun phrases (at most {n}). Answer with a JSON object {{"objects": [...]}}.'
)


def parse_names(text: str, limit: int) -> list[str]:
    """Distinct lower-case names from a ``{"objects": [...]}`` answer (empty when malformed)."""
    match = re.search(r"\{.*\}", text, flags=re.DOTALL)
    try:
        names = json.loads(match.group(0)).get("objects", []) if match else []
    except (json.JSONDecodeError, AttributeError):
        return []
    out = [str(n).strip().lower() for n in names if isinstance(n, str) and str(n).strip()]
    return list(dict.fromkeys(out))[:limit]


def facts_prompt(facts: ClipFacts, limit: int) -> str:
    return f"Write at most {limit} QAs.\nFacts:\n" + json.dumps(facts.to_dict(), separators=(",", ":"))


def parse_qas(text: str, backend: str) -> list[QA]:
    """QAs from a model's JSON answer (the first {...} block); malformed entries are skipped."""
    match = re.search(r"\{.*\}", text, flags=re.DOTALL)
    if not match:
        return []
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return []
    out = []
    for item in data.get("qas", []) if isinstance(data, dict) else []:
        try:
            out.append(
                QA(
                    question=str(item["question"]),
                    answer=str(item["answer"]),
                    q_type=str(item["q_type"]),
                    obj_id=int(item["obj_id"]),
                    span=None if item.get("span") is None else [int(v) for v in item["span"]],
                    claims=[c for c in item.get("claims", []) if isinstance(c, dict)],
                    choices=None if item.get("choices") is None else [str(c) for c in item["choices"]],
                    correct_choice=item.get("correct_choice"),
                    backend=backend,
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return out


class RuleBasedBackend:
    name = "rule-based"

    def __init__(self, config: PipelineConfig) -> None:
        self.qa = config.qa

    def generate(self, facts: ClipFacts) -> list[QA]:
        q = self.qa
        return rule_based_qas(
            facts,
            multiple_choice=q.multiple_choice,
            num_choices=q.num_choices,
            seed=q.seed,
            limit=q.max_per_clip,
        )


class _RateLimiter:
    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self.lock = threading.Lock()
        self.next_time = 0.0

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            delay = self.next_time - now
            self.next_time = max(now, self.next_time) + self.interval
        if delay > 0:
            time.sleep(delay)


class LLMError(RuntimeError):
    pass


class OpenAIBackend:
    """Chat completions against any OpenAI-compatible endpoint (``qa.openai.base_url``)."""

    name = "openai"
    RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}

    def __init__(self, config: PipelineConfig, cache_dir: str | os.PathLike) -> None:
        self.config = config
        self.settings = config.qa.openai
        self.cache_dir = Path(self.settings.cache_dir or cache_dir)
        self.limiter = _RateLimiter(self.settings.requests_per_minute)
        self.requests_sent = 0
        self.cache_hits = 0

    def generate(self, facts: ClipFacts) -> list[QA]:
        return parse_qas(self.complete(facts_prompt(facts, self.config.qa.max_per_clip)), self.name)

    def _body(self, messages: list[dict], model: str) -> dict:
        return {
            "model": model,
            "messages": messages,
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            "response_format": {"type": "json_object"},
        }

    def complete(self, prompt: str) -> str:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
        return self.chat(messages, self.config.models.openai_model)

    def propose_names(self, frame: np.ndarray, max_objects: int) -> list[str]:
        """Object names on one frame [H, W, 3] from the vision model ``models.vlm`` (FoundationMotion's
        naming step: the first frame, people and hands excluded, short nouns)."""
        buf = io.BytesIO()
        image = Image.fromarray(frame)
        image.thumbnail((512, 512))
        image.save(buf, format="JPEG", quality=90)
        url = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        text = PROPOSAL_PROMPT.format(n=max_objects)
        content = [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
        ]
        answer = self.chat([{"role": "user", "content": content}], self.config.models.vlm)
        return parse_names(answer, max_objects)

    def chat(self, messages: list[dict], model: str) -> str:
        """The answer to ``messages``, from the on-disk cache when the same request was made before."""
        body = self._body(messages, model)
        payload = json.dumps(body, sort_keys=True).encode("utf-8")
        key = hashlib.sha256(payload).hexdigest()
        cached = self.cache_dir / key[:2] / f"{key}.json"
        if cached.is_file():
            self.cache_hits += 1
            return json.loads(cached.read_text(encoding="utf-8"))["content"]
        content = self._post(payload)
        write_json_atomic(cached, {"model": body["model"], "content": content})
        return content

    def _post(self, payload: bytes) -> str:
        api_key = os.environ.get(self.settings.api_key_env)
        if not api_key:
            raise LLMError(f"environment variable {self.settings.api_key_env} is not set")
        url = self.settings.base_url.rstrip("/") + "/chat/completions"
        delay = self.settings.backoff_s
        last = "no attempt"
        for attempt in range(self.settings.max_retries + 1):
            self.limiter.wait()
            request = urllib.request.Request(
                url,
                data=payload,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
            )
            try:
                self.requests_sent += 1
                with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                    data = json.loads(response.read().decode("utf-8"))
                return data["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if exc.code not in self.RETRY_STATUS:
                    raise LLMError(f"{url}: {last}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = type(exc).__name__
            except (KeyError, IndexError, json.JSONDecodeError) as exc:
                raise LLMError(f"{url}: unexpected response ({type(exc).__name__})") from None
            if attempt < self.settings.max_retries:
                logger.warning("%s: %s, retry %d in %.1f s", url, last, attempt + 1, delay)
                time.sleep(delay)
                delay *= 2
        raise LLMError(f"{url}: {last} after {self.settings.max_retries + 1} tries")


class LocalBackend:
    """A local transformers causal LM (``models.llm``), greedy decoding."""

    name = "local"

    def __init__(self, config: PipelineConfig) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.tokenizer = AutoTokenizer.from_pretrained(config.models.llm)
        self.model = AutoModelForCausalLM.from_pretrained(config.models.llm).eval().to(config.track.device)

    def generate(self, facts: ClipFacts) -> list[QA]:
        return parse_qas(self.complete(facts_prompt(facts, self.config.qa.max_per_clip)), self.name)

    def complete(self, prompt: str) -> str:
        import torch

        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = SYSTEM_PROMPT + "\n" + prompt + "\n"
        budget = (
            int(getattr(self.model.config, "max_position_embeddings", 4096))
            - self.config.qa.local_max_new_tokens
        )
        tok.truncation_side = "left"  # keep the end of a too-long prompt (the facts' tail and the question)
        inputs = tok(text, return_tensors="pt", truncation=True, max_length=max(16, budget)).to(
            self.model.device
        )
        with torch.no_grad():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.config.qa.local_max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            )
        return tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def build_backend(config: PipelineConfig, out_dir: str | os.PathLike):
    backend = config.qa.backend
    if backend == "rule-based":
        return RuleBasedBackend(config)
    if backend == "openai":
        return OpenAIBackend(config, Path(out_dir) / "llm_cache")
    if backend == "local":
        return LocalBackend(config)
    raise ValueError(f"unknown QA backend {backend!r}")
