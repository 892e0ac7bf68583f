"""Shared by the tests of the compiled kernels (torch_engine/compiled.py): the module, skipped where
it cannot be built (a fixture: import it into a test module to use it), and a spy that counts its
calls."""
import pytest

from gatedrnn.torch_engine import compiled


@pytest.fixture(scope="module")
def kernels():
    module = compiled.pointwise()
    if module is None:
        pytest.skip("the compiled kernels are off or cannot be built here")
    return module


class Spy:
    """Counts the kernel calls of the module it wraps, and names the kernels called."""

    def __init__(self, module):
        self.module, self.calls, self.names = module, 0, set()

    def __getattr__(self, name):
        fn = getattr(self.module, name)

        def call(*args):
            self.calls += 1
            self.names.add(name)
            return fn(*args)
        return call
