"""What each command does with files: the work behind ``unetseg evaluate``, ``inspect``,
``predict`` and ``demo``, callable from Python as well.

`score_split` (in `scoring`) is the one path that scores a checkpoint on a dataset split:
evaluate, inspect and the demo all go through it, so they cannot disagree.
"""
