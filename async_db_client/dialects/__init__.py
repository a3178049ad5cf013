"""SQL dialects: the text of every statement, per engine, apart from running it."""

from .base import Dialect, Migration
from .mysql import MySQLDialect

__all__ = ["Dialect", "Migration", "MySQLDialect"]
