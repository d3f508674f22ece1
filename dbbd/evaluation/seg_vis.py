"""Pictures of segmentations: top views in the ScanNet colour palette."""
import numpy as np

from .feature_vis import render_top_view

__all__ = ['SCANNET20_PALETTE', 'label_colors', 'seg_comparison_image']

#: RGB of the ScanNet-20 classes (wall, floor, cabinet, ...,
#: otherfurniture), the colours of ScanNet's benchmark pictures.
SCANNET20_PALETTE = np.array([
    (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120),
    (188, 189, 34), (140, 86, 75), (255, 152, 150), (214, 39, 40),
    (197, 176, 213), (148, 103, 189), (196, 156, 148), (23, 190, 207),
    (247, 182, 210), (219, 219, 141), (255, 127, 14), (158, 218, 229),
    (44, 160, 44), (112, 128, 144), (227, 119, 194), (82, 84, 163),
], dtype=np.uint8)

#: Colour of unlabelled points (-1), as ScanNet draws them.
UNLABELLED = np.array((0, 0, 0), dtype=np.uint8)


def label_colors(labels, palette=SCANNET20_PALETTE) -> np.ndarray:
    """``(N, 3)`` uint8 colours of class ids (N,); -1 (or any negative)
    black; ids beyond the palette reuse it cyclically."""
    labels = np.asarray(labels, dtype=np.int64)
    colors = palette[np.maximum(labels, 0) % len(palette)]
    colors[labels < 0] = UNLABELLED
    return colors


def seg_comparison_image(coord, gt, pred, size: int = 512,
                         gap: int = 8) -> np.ndarray:
    """Top view of a scene: ground truth (left) beside prediction (right).

    Only labelled points are drawn (those the scores count): unlabelled
    ones, such as a ceiling, would hide the room from above. A scene
    without any label is drawn whole (ground truth black).

    Args:
        coord (N, 3), gt (N,), pred (N,): the scene's points and labels.
        size: pixels along the longer side of each half.
        gap: white columns between the halves.

    Returns:
        (H, 2 * W + gap, 3) uint8 RGB.
    """
    coord, gt, pred = np.asarray(coord), np.asarray(gt), np.asarray(pred)
    labelled = gt >= 0
    if labelled.any():
        coord, gt, pred = coord[labelled], gt[labelled], pred[labelled]
    left = render_top_view(coord, label_colors(gt), size=size)
    right = render_top_view(coord, label_colors(pred), size=size)
    sep = np.full((left.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([left, sep, right], axis=1)
