"""Exporting a chosen assignment as a model file users can ship."""
