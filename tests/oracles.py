"""Plain-numpy reference implementations ("oracles") that the tests compare against.

They are deliberately naive (loops, direct formulas, no numba) so that they are
independent of the code under test.
"""

from __future__ import annotations

import numpy as np
