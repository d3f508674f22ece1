"""Backbones: what turns a batch's points into features.

``DBBDTreeBackbone`` reads a region tree both ways (G2L, L2G) with a
per-region point encoder, optionally on the features of a *scene backbone*
(``forward(coord (P, 3), feat (P, C), offset (B + 1,)) -> (P, D)`` over a
whole batch: ``PointNetSceneBackbone``, ``SpUNet``, ``PointTransformerV3``).
"""
from .pointnet_scene import PointNetSceneBackbone, scene_index
from .ptv3 import PointTransformerV3
from .spunet import SpUNet
from .tree_backbone import DBBDTreeBackbone

__all__ = ['DBBDTreeBackbone', 'PointNetSceneBackbone', 'PointTransformerV3',
           'SpUNet', 'scene_index']
