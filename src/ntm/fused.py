"""The older import path of :mod:`ntm.backends.python`, kept for code written against it.

``ntm.fused`` is the very same module object as ``ntm.backends.python``
(not a copy): reading or setting an attribute of one reads or sets the other's. New code
imports from ``ntm.backends``.
"""

import sys

from .backends.python import __name__ as _target

sys.modules[__name__] = sys.modules[_target]
