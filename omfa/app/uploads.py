"""What the app takes from its users: uploaded files, never a URL to fetch or a path to open.

`gr.Image` preprocesses an upload itself before any event handler runs: it
parses the file with every Pillow decoder, and whenever the image is not RGB
it decodes it in full with no pixel limit (a 200 kB 1-bit PNG of 12000x12000
expands to 430 MB and takes seconds), converts it to RGB (dropping
transparency, clipping 16-bit values) and re-encodes it. An upload Pillow
cannot parse becomes an internal error that the user sees only as "Error".
`ImageUpload` passes the uploaded file's path on unopened, so that
`omfa.imaging.load_image` (header checks, pixel limits, EXIF orientation,
colour management, messages meant for the user) is the only code that decodes
an upload.

Gradio also fetches URLs for its users: an http(s) URL sent in place of an
input file is downloaded, and `/gradio_api/file=<URL>` (or the older
`/gradio_api/file/<URL>`) streams any public URL back (the server as an open
proxy). `ImageUpload` refuses the first before anything is fetched, and the
hosting guard (`omfa.app.hosting.HostingGuard`) the second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components.image import ImageData
from gradio_client.utils import is_http_url_like

REFUSED_URL = "Image links are not fetched; download the image and upload the file itself"
REFUSED_REMOTE_FILE = "This server serves only its own files; it does not fetch URLs"


def image_upload(label: str, **kwargs: Any) -> ImageUpload:
    """An upload widget for one photo (from a file or the clipboard); extra `gr.Image` options in `kwargs`."""
    return ImageUpload(type="filepath", image_mode=None, sources=["upload", "clipboard"], label=label, **kwargs)


class ImageUpload(gr.Image):
    """A `gr.Image` input whose handler gets the uploaded file's path, unopened (build it with `image_upload`).

    The path is always a file of Gradio's upload folder: Gradio refuses any
    other path before `preprocess` runs. No `__init__` of its own: Gradio
    sends the browser the arguments of `gr.Image.__init__` as the widget's
    properties.
    """

    is_template = True  # the browser shows it with gr.Image's own front end

    async def async_move_resource_to_block_cache(self, url_or_file_path: str | Path | None) -> str | None:
        """Gradio's step that copies an input into its cache, except that a URL is refused, not downloaded."""
        if is_http_url_like(url_or_file_path):
            raise gr.Error(REFUSED_URL)
        return await super().async_move_resource_to_block_cache(url_or_file_path)

    def preprocess(self, payload: ImageData | None) -> str | None:
        """The uploaded file's path, or None when nothing was uploaded."""
        return None if payload is None else str(payload.path)
