"""The Gradio page of ``mora demo`` around `DemoService.answer`: one request at a time (a queue), progress from
`predict_video`, user errors as a message in the page, uploads size-limited, no network at run time."""

from __future__ import annotations

import logging
import os
import signal

from mora.demo.examples import DemoExample, example_videos
from mora.demo.service import DemoConfig, DemoError, DemoService
from mora.utils.logging import get_logger

logger = get_logger("demo")
CACHE_SECONDS = 3600  # Gradio's copies of uploads and outputs older than this are deleted (checked as often)
INTRO = (
    "# MoRA: motion questions grounded in pixels\n"
    "Upload an mp4 (or pick an example), ask which object moves how, and get the answer object's masks on "
    "every frame, the time span of the motion (the bar under the video) and a short answer."
)


def _gradio():
    """Gradio with its analytics and version check off (the variable is read when gradio is imported)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr

    return gr


def make_handler(service: DemoService):
    """The page's click handler: (video path, question) -> (overlay, answer, span, zip)."""
    gr = _gradio()

    def answer(video: str | None, question: str, progress=gr.Progress()):  # noqa: B008 (Gradio's idiom)
        try:
            result = service.answer(video, question, lambda fraction, desc: progress(fraction, desc=desc))
        except DemoError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception:
            logger.exception("the request failed")
            raise gr.Error(
                "The model failed on this request (see the server log).", print_exception=False
            ) from None
        overlay = None if result.overlay is None else str(result.overlay)
        return overlay, result.text, result.span, str(result.download)

    return answer


def build_app(service: DemoService, examples: list[DemoExample]):
    """The page (not launched)."""
    gr = _gradio()
    with gr.Blocks(
        title="MoRA demo", analytics_enabled=False, delete_cache=(CACHE_SECONDS, CACHE_SECONDS)
    ) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Video (mp4)", sources=["upload"], elem_id="video-in")
                question = gr.Textbox(
                    label="Question",
                    placeholder="e.g. Which object moves to the left before the square stops?",
                    elem_id="question",
                )
                submit = gr.Button("Answer", variant="primary", elem_id="submit")
                if examples:
                    gr.Examples(
                        [[str(e.video), e.question] for e in examples],
                        inputs=[video, question],
                        label="Synthetic examples",
                    )
            with gr.Column():
                overlay = gr.Video(
                    label="Masks and the predicted span (timeline bar)", interactive=False, elem_id="overlay"
                )
                text = gr.Textbox(label="Answer", interactive=False, elem_id="answer")
                span = gr.Textbox(label="Span", interactive=False, elem_id="span")
                download = gr.File(label="Masks: zip of PNGs + prediction.json", elem_id="download")
        inputs, outputs = [video, question], [overlay, text, span, download]
        submit.click(make_handler(service), inputs, outputs, api_name="answer")
        question.submit(make_handler(service), inputs, outputs, api_name=False)
    return demo


def serve(service: DemoService, config: DemoConfig, *, block: bool = True):
    """Queue and launch the page on ``config.host:config.port``; returns the Blocks (``.local_url``) when not
    blocking, else serves until interrupted."""
    examples = example_videos(config.examples_dir)
    demo = build_app(service, examples)
    demo.queue(default_concurrency_limit=1)
    allowed = [str(service.root)] + sorted({str(e.video.parent) for e in examples})
    demo.launch(
        server_name=config.host,
        server_port=config.port,
        share=False,
        ssr_mode=False,
        max_file_size=int(config.max_file_size_mb * 1024 * 1024),
        allowed_paths=allowed,
        footer_links=[],
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return demo


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # Gradio's serving loop stops on it; the caller's cleanup then runs


def run_demo(model, config: DemoConfig) -> None:
    """``mora demo``: serve the page for ``model`` (loaded once) until interrupted (Ctrl-C or SIGTERM), then
    remove the request folders."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up probes of the page
    signal.signal(signal.SIGTERM, _interrupt)
    service = DemoService(model, config)
    logger.info(
        "serving %s on http://%s:%s (Ctrl-C stops)", config.model, config.host, config.port or "7860+"
    )
    demo = None
    try:
        demo = serve(service, config)
    finally:
        if demo is not None:
            demo.close()
        service.close()
