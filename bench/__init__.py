"""spendstream's benchmarks: every figure measured next to the limit it chases, in the same run.

`python -m bench` (or `make bench`) runs them all against the real stack; `--smoke` runs each for a few seconds
on tiny sizes so the harness is exercised by the test command and never rots.
"""
