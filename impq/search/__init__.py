"""Searches that evaluate candidate assignments on a game: EvoPress and the verified pick."""

from impq.search.evopress import EvoPressResult, SearchState, Stage, evopress

__all__ = ["EvoPressResult", "SearchState", "Stage", "evopress"]
