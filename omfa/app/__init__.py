"""The Gradio app: the studio's runs (`omfa.studio`) as tabs, streamed to the browser.

- ``blocks``: `create_demo`, the tabs and their events (`app.py` launches them).
- ``pose_studio``: the Pose Studio tab and the try-on tabs' pose picker.
- ``uploads``: upload widgets that pass files on unopened, and no fetching of URLs.
- ``checks``: every upload checked when it arrives, its problem said under it; notes as Markdown.
- ``errors``: user errors as a message and one log line, never a traceback.
- ``files``: images enlarged for the screen, in files that are never rewritten.

The only package (with `app.py`) that imports Gradio.
"""
