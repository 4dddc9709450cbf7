"""The demo's request function, without Gradio: a video + a question -> overlay, answer, span and a zip of the
masks, each request in its own temporary folder (the newest few kept, all removed by `DemoService.close`)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mora.inference import PredictOptions, QuestionError, VideoInputError, predict_video
from mora.utils.io import atomic_path
from mora.utils.logging import get_logger

logger = get_logger("demo")

# progress(fraction in [0, 1], description)
DemoProgress = Callable[[float, str], None]
ZIP_NAME = "masks.zip"


class DemoError(Exception):
    """A problem the user can fix from the page (no video, bad video, empty question); one line."""


@dataclass
class DemoConfig:
    """How ``mora demo`` serves a model.

    Attributes:
        model: checkpoint folder or Hub id (loaded once at start).
        host, port: where the page is served (port None: Gradio picks a free one from 7860).
        device, dtype, mode: as in ``mora predict``.
        max_file_size_mb: largest upload accepted.
        max_frames: at most this many frames of an upload get masks (spread evenly; None: all).
        key_frames: frames the model reasons over (None: `PredictOptions`' default).
        keep_requests: request folders kept on disk (older ones are removed when a new one finishes).
        examples_dir: where the bundled synthetic examples are rendered (default: the user's cache).
    """

    model: str
    host: str = "127.0.0.1"
    port: int | None = None
    device: str | None = None
    dtype: str = "float32"
    mode: str = "generate"
    max_file_size_mb: float = 100.0
    max_frames: int | None = 300
    key_frames: int | None = None
    keep_requests: int = 8
    examples_dir: str | None = None

    def __post_init__(self) -> None:
        if self.max_file_size_mb <= 0:
            raise ValueError(f"--max-file-size-mb must be > 0, got {self.max_file_size_mb}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {self.max_frames}")
        if self.key_frames is not None and self.key_frames < 1:
            raise ValueError(f"--key-frames must be >= 1, got {self.key_frames}")
        if self.keep_requests < 1:
            raise ValueError(f"--keep-requests must be >= 1, got {self.keep_requests}")


@dataclass
class DemoAnswer:
    """One request's outputs: the overlay mp4, the answer, the span as text and the masks' zip."""

    overlay: Path | None
    text: str
    span: str
    download: Path
    folder: Path


def span_text(frames: tuple[int, int] | None, seconds: tuple[float, float] | None) -> str:
    """``"1.17 s - 2.50 s (frames 7-15)"``; the frames only when the rate is unknown."""
    if frames is None:
        return "no span predicted (the object is not found moving)"
    where = f"frames {frames[0]}-{frames[1]}"
    if seconds is None:
        return where
    return f"{seconds[0]:.2f} s - {seconds[1]:.2f} s ({where})"


def zip_outputs(folder: Path) -> Path:
    """``folder/masks.zip``: ``prediction.json`` and ``masks/*.png`` (written atomically)."""
    path = folder / ZIP_NAME
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(folder / "prediction.json", "prediction.json")
        for png in sorted((folder / "masks").glob("*.png")):
            archive.write(png, f"masks/{png.name}")
    return path


class DemoService:
    """The loaded model and the request folders; `answer` runs one request (the page queues them one at a time;
    a lock keeps other callers from running the model concurrently)."""

    def __init__(self, model, config: DemoConfig, *, work_dir: str | os.PathLike | None = None) -> None:
        self.model, self.config = model, config
        self.root = Path(tempfile.mkdtemp(prefix="mora-demo-", dir=work_dir))
        self._lock = threading.Lock()
        self._closed = False

    def answer(
        self, video: str | os.PathLike | None, question: str | None, progress: DemoProgress | None = None
    ):
        """Run `predict_video` on ``video`` for ``question``; a `DemoError` (one line) for what the user can fix."""
        if not video:
            raise DemoError("Upload an mp4 or pick an example first.")
        if not (question or "").strip():
            raise DemoError("Type a question about the video.")
        options = PredictOptions(
            mode=self.config.mode,
            max_frames=self.config.max_frames,
            key_frames=self.config.key_frames,
            pngs=True,
            overlay=True,
        )

        def report(stage: str, done: int, total: int) -> None:
            if progress is not None:
                progress(done / max(total, 1), f"{stage}: {done}/{total} frames")

        with self._lock:
            if self._closed:
                raise DemoError("The demo is shutting down.")
            folder = Path(tempfile.mkdtemp(prefix="request-", dir=self.root))
            try:
                if progress is not None:
                    progress(0.0, "answering the question on the key frames")
                result = predict_video(
                    self.model,
                    video,
                    question,
                    folder / "out",
                    options,
                    progress=report,
                    model_id=self.config.model,
                )
                q = result.questions[0]
                download = zip_outputs(q.folder)
            except VideoInputError as err:
                shutil.rmtree(folder, ignore_errors=True)
                raise DemoError(f"Bad video: {err}") from None
            except QuestionError as err:
                shutil.rmtree(folder, ignore_errors=True)
                raise DemoError(f"Bad question: {err}") from None
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            self._prune(keep=folder)
        logger.info("%r: span %s, text %r", q.question, q.span_frames, q.text)
        return DemoAnswer(q.overlay, q.text, span_text(q.span_frames, q.span_seconds), download, folder)

    def request_folders(self) -> list[Path]:
        """The request folders on disk, oldest first."""
        folders = [p for p in self.root.glob("request-*") if p.is_dir()]
        return sorted(folders, key=lambda p: p.stat().st_mtime_ns)

    def _prune(self, keep: Path) -> None:
        folders = [p for p in self.request_folders() if p != keep]
        for old in folders[: max(0, len(folders) + 1 - self.config.keep_requests)]:
            shutil.rmtree(old, ignore_errors=True)

    def close(self) -> None:
        """Remove every request folder (the page must not serve them afterwards)."""
        with self._lock:
            self._closed = True
            shutil.rmtree(self.root, ignore_errors=True)
