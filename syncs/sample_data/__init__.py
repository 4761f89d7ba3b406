"""Deterministic, seeded sample data for Tidings: a messy CRM, product events, shop, billing, consent and ESP logs."""

from syncs.sample_data.generator import RAW_TABLES, generate

__all__ = ["RAW_TABLES", "generate"]
