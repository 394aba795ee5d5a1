"""aten → shardrt Network converters. Importing this package registers them all."""
from .registry import Converter, converter, lookup, registered, target_name  # noqa: F401
from .context import ConversionContext  # noqa: F401
from . import elementwise, linalg, shape, reduce, nn, creation, collectives, symint  # noqa: F401,E402
