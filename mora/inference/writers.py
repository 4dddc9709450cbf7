"""What `predict_video` writes for one question, frame by frame: COCO RLE masks, mask PNGs and the overlay
video (MP4, GIF on request), all in a staging folder that becomes the output folder only when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask

from mora.evaluation.predictions import encode_png
from mora.evaluation.visualize import overlay_frame

GIF_MAX_WIDTH = 320
GIF_MAX_FPS = 10.0


def encode_rle(mask: np.ndarray) -> dict:
    """``[H, W]`` bool -> COCO RLE ``{"size": [H, W], "counts": str}``."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """COCO RLE ``{"size", "counts"}`` -> ``[H, W]`` bool."""
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


class VideoWriter:
    """Frames ``[H, W, 3]`` uint8 appended to an MP4 (H.264, odd sizes padded by one pixel) or a GIF."""

    def __init__(self, path: Path, width: int, height: int, fps: float, codec: str = "libx264") -> None:
        import av

        self.path = path
        self.container = av.open(str(path), "w")
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream(codec, rate=rate)
        even = codec != "gif"
        self.width, self.height = width + (width % 2 if even else 0), height + (height % 2 if even else 0)
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        self._frame_type = av.VideoFrame

    def write(self, rgb: np.ndarray) -> None:
        if rgb.shape[:2] != (self.height, self.width):
            rgb = np.pad(
                rgb, ((0, self.height - rgb.shape[0]), (0, self.width - rgb.shape[1]), (0, 0)), "edge"
            )
        frame = self._frame_type.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


class QuestionOutput:
    """One question's output, written into a staging folder beside ``final`` and moved into place by `commit`.

    ``final`` holds afterwards: ``masks/<frame name>.png`` (optional), ``overlay.mp4`` (optional),
    ``overlay.gif`` (optional) and ``prediction.json``, written last: a folder with a ``prediction.json``
    is complete. Existing outputs of these names in ``final`` are replaced; other files are left alone.
    """

    def __init__(self, final: Path, *, pngs: bool = True) -> None:
        self.final = Path(final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.partial-", dir=self.final.parent))
        self.masks_dir = self.staging / "masks" if pngs else None
        if self.masks_dir is not None:
            self.masks_dir.mkdir()
        self.rles: dict[int, dict] = {}
        self.overlay: VideoWriter | None = None
        self.gif: VideoWriter | None = None
        self._gif_step, self._gif_scale = 1, 1.0

    def add_mask(self, position: int, name: str, mask: np.ndarray) -> None:
        """Record the mask of output frame ``position`` (RLE) and write its PNG."""
        self.rles[position] = encode_rle(mask)
        if self.masks_dir is not None:
            (self.masks_dir / f"{name}.png").write_bytes(encode_png(mask))

    def open_overlay(self, width: int, height: int, fps: float, gif: bool) -> None:
        self.overlay = VideoWriter(self.staging / "overlay.mp4", width, height, fps)
        if gif:
            self._gif_step = max(1, int(round(fps / GIF_MAX_FPS)))
            self._gif_scale = min(1.0, GIF_MAX_WIDTH / width)
            size = (max(2, int(width * self._gif_scale)), max(2, int(height * self._gif_scale)))
            self.gif = VideoWriter(self.staging / "overlay.gif", *size, fps / self._gif_step, codec="gif")

    def add_overlay(self, position: int, frame: np.ndarray, total: int, span: tuple[int, int] | None) -> None:
        """Compose output frame ``position`` (its mask from the recorded RLE) into the overlay video(s)."""
        mask = decode_rle(self.rles[position])
        composed = overlay_frame(frame, mask, total=total, span=span, current=position)
        self.overlay.write(composed)
        if self.gif is not None and position % self._gif_step == 0:
            from PIL import Image

            small = Image.fromarray(composed).resize((self.gif.width, self.gif.height), Image.BILINEAR)
            self.gif.write(np.asarray(small))

    def close_overlay(self) -> None:
        for writer in (self.overlay, self.gif):
            if writer is not None:
                writer.close()

    def commit(self, prediction: dict) -> Path:
        """Write ``prediction.json`` and move everything into ``final`` (``prediction.json`` last)."""
        from mora.utils.io import write_json_atomic

        self.final.mkdir(parents=True, exist_ok=True)
        stale = self.final / "prediction.json"
        if stale.exists():
            stale.unlink()  # the folder must not look complete while its parts are replaced
        for part in ("masks", "overlay.mp4", "overlay.gif"):
            source, target = self.staging / part, self.final / part
            if source.exists():
                if target.is_dir():
                    shutil.rmtree(target)
                os.replace(source, target)
            elif target.exists():  # from an earlier run with other options: not part of this result
                shutil.rmtree(target) if target.is_dir() else target.unlink()
        write_json_atomic(self.final / "prediction.json", prediction)
        self.discard()
        return self.final

    def discard(self) -> None:
        """Remove the staging folder (after `commit`, or on failure: nothing partial is left)."""
        for writer in (self.overlay, self.gif):
            if writer is not None:
                try:
                    writer.container.close()
                except Exception:  # noqa: BLE001 - already closed or broken; the folder goes anyway
                    pass
        self.overlay = self.gif = None
        shutil.rmtree(self.staging, ignore_errors=True)
