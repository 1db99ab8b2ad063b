"""One training run, one job per module (DESIGN.md, Training run).

    spec         what a run trains (TrainSpec): plain data, no torch
    factory      the trial configuration -> model, transform, loss, optimiser, schedule, algorithm
    algorithms/  the training step: ERM, V-REx, ... (one module each, one registry line)
    loop         the plain-PyTorch loop (in-process, or inside a Ray Train worker)
    precision    autocast
    batches      records -> crops, sliding windows and samplers
    transforms   band-pass and normalisation of a window (numpy only)
    checkpoint   weights_only-safe checkpoints and RNG state
    predict      a checkpoint's scores on any records
    ray_train    the Ray Train edge: worker function, trainer, resource shares
    cli          `heartbeatai train` and `heartbeatai evaluate`

Nothing is imported here, so `spec` and `ray_train` stay importable without torch by
the study's planning code.
"""
