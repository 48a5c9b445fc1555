"""The examples in README.md and in the docstrings run and print what they show."""
import doctest
import pathlib

import pytest

import kronjit.dask
import kronjit.dense
import kronjit.operators
import kronjit.sparse
import kronjit.structured
import kronjit.tensors
import kronjit.vectrick

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples():
    result = doctest.testfile(str(README), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4
    assert result.failed == 0


@pytest.mark.parametrize("module", [kronjit.dense, kronjit.sparse, kronjit.structured,
                                    kronjit.tensors, kronjit.vectrick, kronjit.operators,
                                    kronjit.dask],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2
    assert result.failed == 0
