"""The HTTP routes, one module per concern; ``create_app`` includes every router here."""

from service.routes import operations, page, summarize

ROUTERS = (summarize.router, operations.router, page.router)

__all__ = ["ROUTERS"]
