"""Composing messages: the typed, validated, bilingual message catalog and priorities."""
