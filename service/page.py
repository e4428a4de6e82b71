"""The page at ``/``: upload an image, type tags, see which are kept (plain HTML + JS)."""

from importlib.resources import files

PAGE = (files("service") / "static" / "index.html").read_text(encoding="utf-8")
