"""Self-supervised algorithms: a backbone, projection heads and a loss
(DBBD, SceneContrast; SelfDistill with its EMA teacher)."""
from .dbbd import DBBD
from .scene_contrast import SceneContrast
from .self_distill import SelfDistill

__all__ = ['DBBD', 'SceneContrast', 'SelfDistill']
