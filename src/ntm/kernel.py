"""The older import path of :mod:`ntm.backends.kernel`, kept for code written against it.

``ntm.kernel`` is the very same module object as ``ntm.backends.kernel``
(not a copy): reading or setting an attribute of one reads or sets the other's. New code
imports from ``ntm.backends``.
"""

import sys

from .backends.kernel import __name__ as _target

sys.modules[__name__] = sys.modules[_target]
