"""``mora demo``: a local Gradio page to upload a video (or pick a bundled synthetic one), ask a motion question
and get the overlay video with the span's timeline, the answer text, the span in seconds and the masks.

The page only wraps `mora.inference.predict_video` (`DemoService.answer`); Gradio is imported by `mora.demo.app`
alone, so the service and the examples work without it.
"""

from mora.demo.examples import DemoExample, example_videos
from mora.demo.service import DemoAnswer, DemoConfig, DemoError, DemoService

__all__ = [
    "DemoAnswer",
    "DemoConfig",
    "DemoError",
    "DemoExample",
    "DemoService",
    "example_videos",
]
