"""WSGI entry point for gunicorn: ``gunicorn services.wsgi:app``."""

from services.app import create_app

app = create_app()
