"""The HTTP routes, one module per concern; ``create_app`` includes every router here."""

from magneto.service.routes import docs, operations, page, summarize

ROUTERS = (summarize.router, operations.router, page.router, docs.router)

__all__ = ["ROUTERS"]
