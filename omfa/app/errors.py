"""User errors: a message on the screen and one line in the server log, never a traceback.

Gradio prints the traceback of every exception a handler raises, a `gr.Error`
included, unless it is built with `print_exception=False`. A bad upload or an
impossible choice is the user's, not a fault of the app: it gets one log line
(`omfa.app`, level WARNING) and the message. Every other exception still
reaches Gradio as it is, with its traceback, because it is the app's fault.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from omfa.studio.runs import sentence

log = logging.getLogger("omfa.app")


def log_user_error(error: BaseException, where: str) -> str:
    """Log a user's bad input `error` in `where` as one line; returns its message for the screen."""
    message = sentence(error)
    log.warning("user error in %s: %s", where, message)
    return message


def user_error(error: BaseException, where: str) -> gr.Error:
    """The gr.Error to raise for a user's bad input `error` in handler `where`; logs one line."""
    return gr.Error(log_user_error(error, where), print_exception=False)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an event handler so that a ValueError reaches the user as a gr.Error with its message."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValueError as error:
            raise user_error(error, fn.__name__) from error

    return wrapper
