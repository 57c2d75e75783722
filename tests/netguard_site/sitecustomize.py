"""Loaded by Python subprocesses of the tests (PYTHONPATH): the same network guard as in the test process."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
try:
    import netguard

    netguard.install()
finally:
    del sys.path[0]
