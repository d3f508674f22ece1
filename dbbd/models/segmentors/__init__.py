"""Downstream segmentation models (a backbone and a segmentation head)."""
