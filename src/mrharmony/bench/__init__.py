"""What the benchmark scripts share, written once: folds, seeds and the run order, resumable steps
and their record, step timing with a pause log, and summaries written atomically.

The scripts in ``benchmarks/`` declare their rows (what they train and score, their budgets) and
call into this package; nothing below it in the package's layers uses it.

Modules
-------
plan
    Folds over subjects, the seeds of each fold and the order the (fold, seed) pairs run in;
    :class:`~mrharmony.bench.plan.SettingError` for an impossible setting.
record
    Resumable steps (a step's output and the runs it was made from) and the record: the small
    result files copied into a version-controlled folder as each step finishes, and back on a
    machine that lost the output; the log of a run's invocations.
timing
    The wall time of each step over resumed runs, with the pauses of a pause log left out.
summary
    JSON and Markdown summaries written atomically through :mod:`mrharmony.io`, the machine.
dmri
    The dMRI benchmarks' training budgets and rows (Table 1's methods), and the fold loop of
    ``benchmarks/dmri.py``.
dmri_summary
    The statistics, goals and Markdown of the dMRI benchmark's summary.
structural
    What the structural benchmarks share: their data, their runs and their result files.
"""
