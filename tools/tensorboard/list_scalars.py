"""Lists the scalars of a simsiam run folder as TensorBoard's own event reader sees them.

    python3 -m venv .venv && .venv/bin/pip install tensorboard
    .venv/bin/python tools/tensorboard/list_scalars.py runs/tb-demo
"""
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

run = EventAccumulator(sys.argv[1])
run.Reload()
for tag in sorted(run.Tags()["scalars"]):
    points = run.Scalars(tag)
    print(f"{tag:20} {len(points):2} points, steps {[p.step for p in points]}, last {points[-1].value:.4g}")
