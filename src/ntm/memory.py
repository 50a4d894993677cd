"""The older import path of :mod:`ntm.functional.memory`, kept for code written against it.

``ntm.memory`` is the very same module object as ``ntm.functional.memory``
(not a copy): reading or setting an attribute of one reads or sets the other's. New code
imports from ``ntm.functional``.
"""

import sys

from .functional.memory import __name__ as _target

sys.modules[__name__] = sys.modules[_target]
