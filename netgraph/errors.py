"""Exceptions raised for user mistakes.

Every error a user can trigger with bad input is one of these, with a message that
says what was wrong and what is accepted. They subclass ``ValueError`` so that code
catching the builtin keeps working.
"""


class NetgraphError(ValueError):
    """Base class of the errors this library raises for bad input."""


class UnsupportedModelError(NetgraphError):
    """The model contains an operation the unit graph cannot represent."""


class MaskMismatchError(NetgraphError):
    """A mask does not fit the model or graph it is applied to."""


class NotAMaskFileError(NetgraphError):
    """A file is not a mask file written by :meth:`netgraph.MaskSet.save`."""


class InvalidInputError(NetgraphError):
    """An argument is out of range or of the wrong kind (density, weights, options)."""
