"""The MedSegDiff network and its blocks."""

from .conditioning import DynamicConditionalEncoding
from .ff_parser import FFParser
from .network import MedSegDiffUNet, count_parameters

__all__ = ["DynamicConditionalEncoding", "FFParser", "MedSegDiffUNet", "count_parameters"]
