"""The learned token that replaces the input features of masked points."""
import torch
from torch import nn

__all__ = ['MaskToken', 'check_unmasked']


class MaskToken(nn.Module):
    """A learned feature vector for the points a masking transform hid
    (``view['mask']``, see ``RandomPatchMask``).

    ``forward(view)`` returns ``view`` with ``feat`` replaced by the token
    where ``mask`` is True (one ``where``, no host synchronisation);
    unchanged when the view has no mask.

    Args:
        channels: width of the input features.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(channels))
        nn.init.normal_(self.token, std=0.02)

    def forward(self, view: dict) -> dict:
        mask = view.get('mask')
        if mask is None:
            return view
        feat = view['feat']
        token = self.token.to(feat.dtype).expand_as(feat)
        return dict(view, feat=torch.where(mask.unsqueeze(1), token, feat))


def check_unmasked(view: dict, owner: str):
    """One-line error when a view has masked points and ``owner`` has no
    mask token to put in their place."""
    if view.get('mask') is not None:
        raise ValueError(
            f'{owner}: the batch has masked points (a masking transform in '
            'the pipeline) but the model has no mask token; set '
            f'mask_token=True on {owner}')
