"""The command line's grammar: options from the settings, and one-line mistakes with a did-you-mean."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
from pathlib import Path

from batch_style.errors import UserError
from batch_style.settings import FIELDS, INITS, PRESETS, Settings, checked, resolve
from batch_style.text import number, printable

# What the tools people come from call our options (jcjohnson/neural-style and
# ProGamerGov/neural-style-pt: `-num_iterations`; cysmith/neural-style-tf: `--max_iterations`;
# crowsonkb/style-transfer-pytorch: `--iterations`; anishathalye/neural-style: `--width`), by
# name without dashes, `-` as `_`. CONTENT and STYLE are stylize's positional arguments.
PEERS: dict[str, str] = {
    **dict.fromkeys(("max_iterations", "num_iterations", "iterations", "max_iter", "num_steps",
                     "first_frame_iterations", "maxiter", "iters"), "--steps"),
    "frame_iterations": "--frame-steps",
    **dict.fromkeys(("original_colors", "transfer_color", "keep_colors"), "--preserve-colors"),
    **dict.fromkeys(("content_img", "content_image", "content"), "CONTENT"),
    **dict.fromkeys(("style_imgs", "style_image", "style_images", "styles", "style"), "STYLE"),
    **dict.fromkeys(("style_imgs_weights", "style_blend_weights", "style_img_weights"),
                    "--style-blend"),
    **dict.fromkeys(("image_size", "max_size", "end_scale", "width", "img_size"), "--size"),
    **dict.fromkeys(("tv_weight_1", "tv_weight_2"), "--tv-weight"),
    **dict.fromkeys(("save_iter", "checkpoint_iterations", "save_every"), "--save-every"),
    **dict.fromkeys(("print_iter", "print_iterations", "print_every"), "--print-every"),
    **dict.fromkeys(("init_img_type", "initial", "init_image", "init_img"), "--init"),
    **dict.fromkeys(("lr", "step_size"), "--learning-rate"),
    "style_scale_fac": "--style-scale",
    **dict.fromkeys(("output_image", "img_name", "img_output_dir"), "-o"),
    "random_seed": "--seed",
    "gpu": "--device",
    **dict.fromkeys(("model_weights", "model_file", "network"), "--weights"),
    "min_scale": "--scales",
}
POSITIONAL = {"CONTENT": "the photo is stylize's first argument: batch-style stylize CONTENT STYLE…",
              "STYLE": "styles are stylize's arguments after the photo: batch-style stylize "
                       "CONTENT STYLE [STYLE…]"}
# A yes/no option's value as a manifest may give it (YAML's words and 1/0).
BOOLEAN = {**dict.fromkeys(("true", "yes", "on", "1"), True),
           **dict.fromkeys(("false", "no", "off", "0"), False)}
IN_MANIFEST = {"CONTENT": "a job's `content` in the manifest", "STYLE": "a job's `style` in the "
               "manifest"}


class Parser(argparse.ArgumentParser):
    """argparse, but an unknown option is one line that says what was probably meant (from our
    names and the peers'), a bad value one line (CommandParser), and a missing argument shows
    the usage of the command it was made in. `commands` (name → parser) is set when the
    sub-commands are added."""

    commands: dict[str, argparse.ArgumentParser]

    def parse_args(self, args=None, namespace=None):
        args = self._spelled(list(sys.argv[1:] if args is None else args))
        self._check_words(args)
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            # argparse reports a command's extra words at the top level, with the top usage
            self.commands.get(getattr(namespace, "command", None), self).error(
                f"unrecognized arguments: {' '.join(extras)}")
        return namespace

    def _spelled(self, args: list[str]) -> list[str]:
        """The words as argparse takes them: a setting as the manifest spells it (`--style_weight`)
        as ours (`--style-weight`), and a yes/no option with a value as the manifest gives one
        (`--warm-start false`, `=no`, `0`) as the option or its `--no-` form."""
        at = _command_at(args)
        parser = self.commands.get(args[at]) if at is not None else None
        if parser is None:
            return args
        options = parser._option_string_actions  # argparse keeps no public list of them
        out, rest = args[:at + 1], args[at + 1:]
        while rest:
            word = rest.pop(0)
            if word == "--":
                return out + [word, *rest]  # what follows is positional, whatever it looks like
            name, eq, value = word.partition("=")
            if name.startswith("--") and name.replace("_", "-") in options:
                name = name.replace("_", "-")
                word = name + eq + value
            if not isinstance(options.get(name), argparse.BooleanOptionalAction) or \
                    name.startswith("--no-"):
                out.append(word)
                continue
            if not eq and rest and rest[0].lower() in BOOLEAN:
                value, eq = rest.pop(0), "="
            if eq and value.lower() not in BOOLEAN:
                self._refuse(f"{name}: expected true or false (or {name} alone, --no-{name[2:]}),"
                             f" got {value!r}")
            out.append(name if not eq or BOOLEAN[value.lower()] else "--no-" + name[2:])
        return out

    def _check_words(self, args: list[str]) -> None:
        """Before argparse: an unknown command or option is one line (exit 2). argparse would
        show a usage that is not the command's, or read `-original_colors` as `-o riginal_colors`."""
        at = _command_at(args)
        if at is None:
            return
        command = args[at]
        if command not in self.commands:
            close = difflib.get_close_matches(command, list(self.commands), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            self._refuse(f"{command!r}: unknown command ({hint}commands: "
                         f"{', '.join(self.commands)})")
        parser = self.commands[command]
        for word in args[at + 1:]:
            if word == "--":
                break  # what follows is positional, whatever it looks like
            problem = unknown_option(parser, command, word)
            if problem:
                self._refuse(problem)

    def _refuse(self, message: str) -> None:
        self.exit(2, printable(f"batch-style: error: {message}") + "\n")


class CommandParser(argparse.ArgumentParser):
    """A command's parser: a bad value is one line that names the option, what was given and
    what it takes (exit 2); a missing argument still shows the command's usage."""

    def error(self, message: str):
        if message.startswith("argument "):  # argparse's words for a value it could not take
            self.exit(2, printable(f"batch-style: error: {message[len('argument '):]}") + "\n")
        if message.startswith("ambiguous option"):  # an abbreviation of several options
            self.exit(2, printable(f"batch-style: error: {message}") + "\n")
        super().error(message)


def _command_at(args: list[str]) -> int | None:
    """Where the command is among the words (None: not given)."""
    at = 0
    while at < len(args) and args[at].startswith("-"):
        at += 1  # the program's own options (--debug, --version, --help) come first
    return at if at < len(args) else None


def unknown_option(parser: argparse.ArgumentParser, command: str, word: str) -> str | None:
    """Why `word` is not an option of `command` and what was probably meant; None when it is one
    (or not an option at all: a value, a negative number, a path)."""
    name = word.split("=", 1)[0]
    options = parser._option_string_actions  # argparse keeps no public list of them
    if not name.startswith("-") or name == "-" or " " in word or \
            parser._negative_number_matcher.match(name) or name in options:
        return None
    key = name.lstrip("-").lower().replace("-", "_")
    ours = {o.lstrip("-").replace("-", "_"): o for o in options if o.startswith("--")}
    target = ours.get(key) or PEERS.get(key) or (
        "--" + key.replace("_", "-") if key in FIELDS else None)  # a setting, for `run`
    if target is None:
        if name.startswith("--") and any(o.startswith(name) for o in options):
            return None  # an abbreviation: argparse takes it, or says it is ambiguous
        if not name.startswith("--") and name[:2] in options:
            return None  # a short option with its value attached: -oresult.png
        close = difflib.get_close_matches(name, [o for o in options if o.startswith("--")], n=1)
        target = close[0] if close else None
    return f"{name}: unknown option{_meant(target, command, options)}"


def _meant(target: str | None, command: str, options) -> str:
    if target is None:
        return f" (batch-style {command} --help lists them)"
    if target in POSITIONAL:
        return f" ({POSITIONAL[target] if command == 'stylize' else IN_MANIFEST[target]})"
    if target in options:
        return f" (did you mean {target}?)"
    setting = target[2:].replace("-", "_")
    if setting in FIELDS:
        return f" (in a manifest: the setting `{setting}`, under `defaults` or a job's `settings`)"
    return f" ({target} is an option of `batch-style stylize`)"


# -- settings from the options ---------------------------------------------------------------
def _given_settings(args: argparse.Namespace) -> dict:
    """The settings given as options, each checked as a manifest's value (one line each)."""
    given = {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}
    return checked(given, lambda name: "--" + name.replace("_", "-"))


def stylize_settings(args: argparse.Namespace) -> Settings:
    """`stylize`'s settings from its options."""
    try:
        return resolve(_given_settings(args))
    except ValueError as e:
        raise UserError(str(e)) from None


def run_settings(args: argparse.Namespace) -> dict:
    """`run`'s settings, over every job's: a preset's values come with it, so that they win over
    the manifest's as the options given with it do; an init image is a file named from here."""
    given = _given_settings(args)
    if given.get("init") not in (None, *INITS):
        path = Path(given["init"]).absolute()
        if not path.is_file():
            raise UserError(f"no such file {given['init']!r}", field="--init")
        given["init"] = str(path)
    preset = given.get("preset")
    return {"preset": preset, **PRESETS[preset], **given} if preset else given


# -- options from the settings --------------------------------------------------------------------
def add_settings_options(parser: argparse.ArgumentParser,
                         title: str = "settings (as in a manifest; see the README's table)") -> None:
    """An option per setting (`--content-weight` for `content_weight`), each default shown as the
    README writes it and read from the Settings dataclass, where it is written once."""
    group = parser.add_argument_group(title)
    for name, f in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = meta["help"]
        if meta["kind"] == "preset":
            help_text = "a named bundle of settings under your own: " + "; ".join(
                f"{p}: " + ", ".join(f"{k} {number(v)}" for k, v in values.items())
                for p, values in PRESETS.items()) + " (default: none)"
        elif default is not None and "default" not in help_text:
            shown = " ".join(map(number, default)) if isinstance(default, tuple) else number(default)
            help_text += f" (default: {shown})"
        help_text = help_text.replace("%", "%%")
        if meta["kind"] == "colors":  # --preserve-colors alone: luminance, as it always was
            group.add_argument(flag, dest=name, nargs="?", const="luminance", default=None,
                               type=colors(meta["choices"]), help=help_text,
                               metavar="{" + ",".join(("true", "false", *meta["choices"])) + "}")
        elif isinstance(default, bool):
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
        elif meta["kind"] in ("layers", "floats"):
            group.add_argument(flag, dest=name, nargs="+", default=None, help=help_text,
                               type=_number(float) if meta["kind"] == "floats" else str,
                               metavar="LAYER" if meta["kind"] == "layers" else "W")
        else:
            choices = tuple(PRESETS) if meta["kind"] == "preset" else meta["choices"]
            kind = _number(type(default) if default is not None else str)
            group.add_argument(flag, dest=name, type=choice(choices, kind) if choices else kind,
                               default=None, help=help_text, metavar="{" + ",".join(
                                   map(str, choices)) + "}" if choices else name.upper())


def choice(choices, kind=str, names=None):
    """An argparse type: one of `choices` (after `kind`), else what was given, the choices (as
    `names` says them) and the closest of them, said in one line."""
    names = names or [str(c) for c in choices]

    def pick(text: str):
        value = kind(text)
        if value in choices:
            return value
        close = difflib.get_close_matches(text, names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise argparse.ArgumentTypeError(f"expected {_one_of(names)}, got {text!r}{hint}")
    return pick


def colors(methods):
    """--preserve-colors' value: a method, or yes/no as a manifest gives it (yes: luminance)."""
    names = ["true", "false", *methods]

    def pick(text: str):
        if text.lower() in BOOLEAN:
            return "luminance" if BOOLEAN[text.lower()] else False
        return choice(methods, names=names)(text)
    return pick


def _one_of(names: list[str]) -> str:
    return " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]


def _number(kind):
    if kind is float:
        def real(text: str) -> float:
            try:
                return float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        return real
    if kind is int:
        def whole(text: str) -> int:
            try:
                value = float(text)  # accepts 1e3 as well as 1000
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
            if not value.is_integer():
                raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
            return int(value)
        return whole
    return str


def count(text: str) -> int:
    """A number of workers or steps: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def positive(text: str) -> int:
    """A number of steps between two things: a whole number, 1 or more."""
    value = count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value
