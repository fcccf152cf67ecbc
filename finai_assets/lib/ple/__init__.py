"""The PLE multi-task teacher, one concern per file.

- `tasks.py`        task specs (type, classes, group, weight) read from the decision table;
- `experts/`        the seven heterogeneous shared experts, one file each, behind one contract;
- `model.py`        PLE: feature routing, CGC extraction layers, task towers and heads;
- `losses.py`       masked per-task losses and the loss weighting (uncertainty, fixed, GradNorm, DWA);
- `train.py`        the training loop (AdamW, warmup + cosine, clipping, early stopping);
- `metrics.py`      per-task metrics and the checkpoint-selection composite;
- `checkpoint.py`   checkpoint save / verified load (sha256, weights_only, schema match);
- `baselines.py`    per-task LightGBM and the shared-bottom MLP.

torch is imported by these modules; Dagster definitions import them inside asset bodies only.
"""
