"""Hooks (``HOOKS``)."""
from .checkpoint_hook import SafeCheckpointHook, to_plain

__all__ = ['SafeCheckpointHook', 'to_plain']
