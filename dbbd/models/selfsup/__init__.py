"""Self-supervised algorithms: a backbone, projection heads and a loss."""
from .dbbd import DBBD

__all__ = ['DBBD']
