"""On-disk state of a run directory: checkpoints, the per-step log, summary.json.

Every function here does file I/O and is called on rank 0 only (through
:func:`distnqs.comm.on_root`, which broadcasts its result or error); none of
them contains a collective.
"""
