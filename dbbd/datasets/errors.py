"""The exception of a dataset whose prepared data is missing.

Its own module so that the dataset (:mod:`.dbbd_dataset`) and the demo's
data preparation (:mod:`.demo`), which both raise it, need not import each
other for it.
"""

__all__ = ['DataPreparationError']


class DataPreparationError(FileNotFoundError):
    """A split is missing or empty; the message says which command fixes it.
    """
