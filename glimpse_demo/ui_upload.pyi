"""An image input that leaves opening the file to us.

Gradio writes a ``.pyi`` stub beside any module that defines a component class; this module holds
only that class, so its stub (``ui_upload.pyi``) stays small.
"""

from __future__ import annotations

import base64
import binascii

import gradio as gr

from gradio.events import Dependency

class UploadImage(gr.Image):
    """``gr.Image`` that hands the upload over unopened: a file path, or bytes for a pasted data URL.

    Gradio's own preprocessing opens the file with PIL, so a corrupt or exotic upload would fail
    there with a bare error; this way it reaches ``images.open_image`` and its clear message.
    """

    is_template = True  # drawn by the browser as a plain gr.Image

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):
            try:
                return base64.b64decode(payload.url.split(",", 1)[1], validate=True)
            except (IndexError, ValueError, binascii.Error) as e:
                raise gr.Error("the pasted image could not be decoded") from e
        return payload.path
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component