"""`stylize`'s optimization, its phases and steps on the command line's bar (console.StepBar):
TensorFlow and the model loaded, the steps, the pictures a progress GIF and --save-every want."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

from batch_style.errors import UserError


def stylize(args, settings, pictures, bar, out: Path, gif: Path | None):
    """The optimization of `stylize`, its phases and steps on the bar: (result, the GIF's
    pictures, the settings it ran with)."""
    from batch_style.engine import tf_runtime
    from batch_style.media import images

    content, styles, init, regions = pictures
    if args.device == "gpu" and not tf_runtime.import_tensorflow().config.get_visible_devices("GPU"):
        raise UserError("no GPU that TensorFlow can use (`batch-style doctor` says why)",
                        field="--device")
    tf_runtime.import_tensorflow(gpus=args.device != "cpu")  # --device cpu: the GPUs stay untouched
    from batch_style.engine.model import load_feature_model
    from batch_style.engine.stylizer import Stylizer
    from batch_style.pipeline import memory

    bar.phase("loading the model")
    model = load_feature_model(settings.content_layers + settings.style_layers, args.weights,
                               tiny=args.tiny, pooling=settings.pooling)
    bar.phase("measuring this machine and compiling")
    snapshots = []
    gif_every = settings.snapshot_every
    if args.save_every:
        # The optimizer hands out pictures every `snapshot_every` steps: often enough for both.
        settings = settings.replace(snapshot_every=math.gcd(gif_every, args.save_every))

    def on_progress(event):
        bar.update(event)
        if event.snapshot is None:
            return
        if gif is not None and (event.step % gif_every == 0 or event.step == event.steps):
            snapshots.append(images.to_uint8(event.snapshot))
        if args.save_every and event.step % args.save_every == 0:
            images.save_image(event.snapshot, numbered(out, event))

    with tf_runtime.on_cpu() if args.device == "cpu" else contextlib.nullcontext():
        budget = memory.budget_bytes(settings, "0" if tf_runtime.has_gpu() else None)
        result = Stylizer(model).stylize(content, styles, settings, init=init, regions=regions,
                                         callback=on_progress, memory=budget)
    return result, snapshots, settings



def numbered(out: Path, event) -> Path:
    """`--save-every`: the picture at a step, next to the result: RESULT.0050.png (with several
    scales, RESULT.scale1.0050.png: each scale counts its steps from 1)."""
    scale = f".scale{event.scale + 1}" if event.scales > 1 else ""
    return out.with_name(f"{out.stem}{scale}.{event.step:04d}{out.suffix}")


