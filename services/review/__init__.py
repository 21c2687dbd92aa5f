"""Moderator review UI (placeholder until the review issue lands)."""

from flask import Blueprint

bp = Blueprint("review", __name__, url_prefix="/review")
