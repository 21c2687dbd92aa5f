"""Built-in cost dashboard (placeholder until the cost issue lands)."""

from flask import Blueprint

bp = Blueprint("dashboard", __name__)
