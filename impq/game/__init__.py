"""Games over decoder blocks: value functions of boolean coalition matrices."""

from impq.game.base import Game, check_coalitions
from impq.game.model import (
    ModelGame,
    WeightQuantizer,
    check_game_backend,
    game_backends,
    model_fingerprint,
    weight_quantizer,
)
from impq.game.synthetic import AdditiveGame, LevelGame, QuadraticGame, RandomGame, TableGame

__all__ = [
    "AdditiveGame",
    "Game",
    "LevelGame",
    "ModelGame",
    "QuadraticGame",
    "RandomGame",
    "TableGame",
    "WeightQuantizer",
    "check_coalitions",
    "check_game_backend",
    "game_backends",
    "model_fingerprint",
    "weight_quantizer",
]
