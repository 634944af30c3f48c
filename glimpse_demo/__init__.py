"""glimpse-demo: GlimpsePrune on Qwen2.5-VL, side by side with the unpruned baseline.

Importing the package is free: nothing is loaded until asked for.
"""

__version__ = "0.1.0"
