"""Backbones: what turns a batch's points into features.

``DBBDTreeBackbone`` reads a region tree both ways (G2L, L2G) with a
per-region point encoder.
"""
from .tree_backbone import DBBDTreeBackbone

__all__ = ['DBBDTreeBackbone']
