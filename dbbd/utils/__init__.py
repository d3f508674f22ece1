"""Small helpers shared by tools and engine."""
from .config_check import ConfigError, check_config_types

__all__ = ['ConfigError', 'check_config_types']
