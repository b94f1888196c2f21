"""microtome: a microscope for vision models.

Stages of the data flow, imports pointing one way:
zoo, optvis -> techniques, data -> store -> build -> web; cli.py on top.
"""

__version__ = "0.2.0"
