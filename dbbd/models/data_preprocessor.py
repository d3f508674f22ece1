"""Moves a collated DBBD batch to the model's device."""
from dbbd.registry import MODELS
from dbbd.structures.tree_index import TreeIndex
from mmengine.model import BaseDataPreprocessor

__all__ = ['DBBDDataPreprocessor']


@MODELS.register_module()
class DBBDDataPreprocessor(BaseDataPreprocessor):
    """Cast the batch of ``docs/data_format.md`` to the model's device.

    ``cast_data`` walks the nested ``inputs`` dict (tensors, lists of
    per-level tensors, the tree index) and leaves ``data_samples`` (plain dicts of strings
    and ints) as they are. Nothing is normalised here: the features are
    whatever the dataset's pipeline produced.

    Args:
        non_blocking: copy with ``non_blocking`` (pinned memory on CUDA).
    """

    def __init__(self, non_blocking: bool = False):
        super().__init__(non_blocking=non_blocking)

    def cast_data(self, data):
        """mmengine's ``cast_data``, plus the batch's
        :class:`~dbbd.models.utils.TreeIndex` (moved with its ``to``)."""
        if isinstance(data, TreeIndex):
            return data.to(self.device, non_blocking=self._non_blocking)
        return super().cast_data(data)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        if 'inputs' not in data:
            raise KeyError('a DBBD batch is dict(inputs=..., data_samples=...)'
                           f', got keys {sorted(data)}')
        data.setdefault('data_samples', None)
        return data
