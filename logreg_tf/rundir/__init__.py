"""The run directory (--model_dir) and everything written into it.

    workdir.py      ModelDir: the one owner of the directory's layout, the lock
    checkpoints.py  saving, restoring and refusing checkpoints; the trained model
    files.py        which checkpoints exist and whether each is intact
    snapshot.py     the copy of the variables a background save writes
    outputs.py      what the chief writes during a run (events, figures, run.json)
    summaries.py    the log line, TensorBoard scalars and hparams
    runinfo.py      run.json
    durable.py      the one atomic, flushed write
"""
