"""The compiled mask walk (``onrails/constrain/_walk.c``); everything else is in pyproject.toml.

Optional: without a C compiler the package installs and its walks run in numpy, slower.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("onrails.constrain._walk", ["onrails/constrain/_walk.c"], optional=True)])
