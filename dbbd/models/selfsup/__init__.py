"""Self-supervised algorithms: a backbone, projection heads and a loss."""
from .dbbd import DBBD
from .scene_contrast import SceneContrast

__all__ = ['DBBD', 'SceneContrast']
