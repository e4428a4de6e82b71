"""The REST service (``magneto.service``): POST an image and its tags, get the kept tags back.

It owns the FastAPI application (:mod:`~magneto.service.app`), its routes, request bodies and
schemas, micro-batching, admission control and the server entry (:mod:`~magneto.service.server`).
It builds on the library's inference side only (``magneto.infer``, ``magneto.data``,
``magneto.errors``): it never imports training code. This file imports nothing, so that a route
importing a sibling module never re-enters a half-initialised package.
"""
