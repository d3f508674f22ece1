"""Feature pictures: a scene seen from the top, points coloured by the first
three principal components of their features (red, green, blue).

Points whose features are alike get alike colours, so a picture with
objects standing out in their own colours means the features tell those
objects apart; one flat colour means collapsed features. Pure numpy / torch
(no matplotlib needed): the result is an ``(H, W, 3)`` uint8 RGB array
that ``Visualizer.add_image`` (TensorBoard) or any PNG writer takes.
"""
from typing import Optional

import numpy as np
import torch

__all__ = ['pca_rgb', 'render_top_view', 'feature_image', 'save_png']


def pca_rgb(feat, max_fit_points: int = 20000, seed: int = 0) -> np.ndarray:
    """Colours (N, 3) in [0, 1] from the top-3 principal components.

    The components are fitted on up to ``max_fit_points`` rows (random,
    ``seed``); each is signed so its largest loading is positive (stable
    colours from one validation to the next) and stretched between its 1st
    and 99th percentile. Fewer than 3 dimensions leave the missing channels
    at 0.5.
    """
    x = torch.as_tensor(np.asarray(feat) if not torch.is_tensor(feat)
                        else feat.detach().cpu()).double()
    n, d = x.shape
    fit = x
    if n > max_fit_points:
        g = torch.Generator().manual_seed(seed)
        fit = x[torch.randperm(n, generator=g)[:max_fit_points]]
    mean = fit.mean(0)
    c = fit - mean
    cov = c.T @ c / max(fit.shape[0], 1)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    k = min(3, d)
    comps = evecs[:, -k:].flip(1)  # (D, k), largest first
    sign = torch.sign(comps.gather(0, comps.abs().argmax(0, keepdim=True)))
    comps = comps * torch.where(sign == 0, torch.ones_like(sign), sign)
    proj = (x - mean) @ comps
    proj_fit = (fit - mean) @ comps
    lo = torch.quantile(proj_fit, 0.01, dim=0)
    hi = torch.quantile(proj_fit, 0.99, dim=0)
    rgb = ((proj - lo) / (hi - lo).clamp(min=1e-12)).clamp(0, 1)
    if k < 3:
        rgb = torch.cat([rgb, rgb.new_full((n, 3 - k), 0.5)], 1)
    return rgb.numpy()


def render_top_view(coord, colors, size: int = 512,
                    point_radius: Optional[int] = None, margin: int = 4,
                    background: int = 255) -> np.ndarray:
    """Rasterise points seen from above (+z) into an RGB uint8 image.

    Args:
        coord (N, 3): positions; x to the right, y up in the picture, equal
            scale on both axes (the longer side gets ``size`` pixels).
        colors (N, 3): RGB in [0, 1] (float) or 0..255 (uint8).
        point_radius: each point covers a ``(2r + 1)^2`` pixel square;
            None picks ``r`` from the point density (the squares of evenly
            spread points would about tile the picture), at most 4.
        background: grey level of empty pixels.

    Where points overlap, the highest one wins (a z-buffer).
    """
    coord = np.asarray(coord, dtype=np.float64)
    colors = np.asarray(colors)
    if colors.dtype != np.uint8:
        colors = (np.clip(colors, 0, 1) * 255 + 0.5).astype(np.uint8)
    if coord.shape[0] == 0:
        return np.full((size, size, 3), background, np.uint8)
    xy = coord[:, :2]
    lo, hi = xy.min(0), xy.max(0)
    span = max(float((hi - lo).max()), 1e-9)
    scale = (size - 2 * margin - 1) / span
    w = int(np.rint((hi[0] - lo[0]) * scale)) + 2 * margin + 1
    h = int(np.rint((hi[1] - lo[1]) * scale)) + 2 * margin + 1
    px = np.rint((xy[:, 0] - lo[0]) * scale).astype(np.int64) + margin
    py = np.rint((hi[1] - xy[:, 1]) * scale).astype(np.int64) + margin
    if point_radius is None:
        per_point = (w - 2 * margin) * (h - 2 * margin) / coord.shape[0]
        point_radius = min(4, max(0, int(np.ceil(
            (np.sqrt(per_point) - 1) / 2))))
    r = int(point_radius)
    offs = np.arange(-r, r + 1)
    ox, oy = np.meshgrid(offs, offs, indexing='xy')
    ox, oy = ox.ravel(), oy.ravel()
    # points sorted by height; per pixel the last (highest) one is kept
    order = np.argsort(coord[:, 2], kind='stable')
    ex = (px[order][:, None] + ox[None]).ravel()
    ey = (py[order][:, None] + oy[None]).ravel()
    src = np.repeat(order, ox.size)
    ok = (ex >= 0) & (ex < w) & (ey >= 0) & (ey < h)
    pid = (ey * w + ex)[ok]
    src = src[ok]
    # np.unique on the reversed array gives each pixel's last occurrence
    _, first = np.unique(pid[::-1], return_index=True)
    last = pid.size - 1 - first
    img = np.full((h * w, 3), background, np.uint8)
    img[pid[last]] = colors[src[last]]
    return img.reshape(h, w, 3)


def feature_image(coord, feat, size: int = 512,
                  point_radius: Optional[int] = None,
                  max_points: Optional[int] = None,
                  seed: int = 0) -> np.ndarray:
    """Top view of ``coord (N, 3)`` coloured by the PCA of ``feat (N, D)``.

    ``max_points``: draw a random subset (``seed``) of that many points.
    """
    coord = np.asarray(coord.detach().cpu() if torch.is_tensor(coord)
                       else coord, dtype=np.float64)
    feat = feat.detach().cpu() if torch.is_tensor(feat) else \
        torch.as_tensor(np.asarray(feat))
    if max_points is not None and coord.shape[0] > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(
            coord.shape[0], max_points, replace=False))
        coord, feat = coord[idx], feat[torch.from_numpy(idx)]
    return render_top_view(coord, pca_rgb(feat, seed=seed), size=size,
                           point_radius=point_radius)


def save_png(path: str, image: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB image as PNG (``matplotlib.image``,
    which needs no GUI backend)."""
    from matplotlib import image as mpimg
    mpimg.imsave(path, np.ascontiguousarray(image), format='png')
