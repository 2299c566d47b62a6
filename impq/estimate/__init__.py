"""Shapley value and interaction estimators."""

from impq.estimate.result import ShapleyResult

__all__ = ["ShapleyResult"]
