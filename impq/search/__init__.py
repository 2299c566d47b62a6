"""Searches that evaluate candidate assignments on a game: EvoPress, the search seeded by
impq and the verified pick."""

from impq.search.evopress import EvoPressResult, SearchState, Stage, evopress
from impq.search.seeded import SeededResult, seeded

__all__ = ["EvoPressResult", "SearchState", "SeededResult", "Stage", "evopress", "seeded"]
