"""Every upload checked the moment it arrives, and notes about inputs, said next to them.

An upload that cannot be used (a broken or hostile file, a photo with no
person, a garment photo that shows a cat) is reported under its widget when it
is uploaded, not only when Run is pressed. A readable one is prepared exactly as
Run will prepare it; the preparation is cached by content, so Run does not do
it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from omfa.app.errors import log_user_error
from omfa.app.uploads import ImageUpload, image_upload
from omfa.imaging import ImageInputError, load_image
from omfa.studio.context import StudioContext
from omfa.studio.runs import TRY_OFF_EXPECT, input_notes


def notice_text(notes: Sequence[str]) -> str:
    """Notes about the inputs (`Frame.notes`) as Markdown paragraphs."""
    return "\n\n".join(f"**Note:** {note}" for note in notes)


def check_upload(ctx: StudioContext, path: str | None, role: str) -> tuple[Any, str]:
    """(the upload, a message under it) for a file just uploaded as `role`.

    role: "portrait", "garment", "photo" (try-off's dressed person) or "pose" (a photo to copy
    a pose from). An unreadable or hostile file is removed from the widget (no broken-image
    icon) and the message says what is wrong with it; a readable one is prepared as Run will
    prepare it (cached, so Run does not do it again) and the message says what was found.
    """
    if path is None:  # emptied (by the check itself, after a broken file): its message stays
        return gr.skip(), gr.skip()
    try:
        load_image(path)
    except ImageInputError as error:
        return None, f"**This file cannot be used:** {log_user_error(error, f'upload ({role})')}"
    try:
        if role == "garment":
            garment = ctx.garment(path)
            return gr.skip(), garment.info
        if role == "pose":
            ctx.photo_pose(path)
            return gr.skip(), "Person found: **Copy the pose from the photo** takes their pose."
        person = ctx.portrait(path, "photo" if role == "photo" else "portrait")
    except ValueError as error:
        return gr.skip(), f"**This photo will not work:** {log_user_error(error, f'upload ({role})')}"
    if role == "photo":
        notes = input_notes(ctx, person, role, whole_body=False, expect=TRY_OFF_EXPECT)
    else:
        notes = input_notes(ctx, person, role, whole_body=True)
    return gr.skip(), "\n\n".join([person.info, notice_text(notes)]).strip()


def checked_upload(ctx: StudioContext, label: str, elem_id: str, role: str, **kwargs: Any) -> ImageUpload:
    """An upload widget with its check (`check_upload`) shown under it as soon as a file arrives."""
    with gr.Column(min_width=160):  # the message under its widget, also when widgets sit side by side
        widget = image_upload(label, elem_id=elem_id, **kwargs)
        message = gr.Markdown("", elem_id=f"{elem_id}_check", elem_classes=["omfa-check"])

    def check(path: str | None) -> tuple[Any, str]:
        return check_upload(ctx, path, role)

    # On every new value (an upload, a pasted image, an example), in a concurrency group of its own:
    # a check (under a second) does not wait for a diffusion run.
    widget.change(check, widget, [widget, message], api_visibility="private", concurrency_id="uploads")
    widget.clear(lambda: "", None, message, api_visibility="private", queue=False)
    return widget
