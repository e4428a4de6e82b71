"""The REST service: POST an image and its tags, get the kept tags back."""

from service.app import create_app
from service.server import serve
from service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app", "serve"]
