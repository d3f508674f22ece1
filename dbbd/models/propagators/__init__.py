"""G2L propagators: parent region feature -> per-point context."""
from .mlp_propagator import MLPPropagator

__all__ = ['MLPPropagator']
