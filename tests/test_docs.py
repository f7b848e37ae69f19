"""The README and docs/ as written: their commands run, the files they name exist, jobs/ validates.

Every shell block of README.md and docs/*.md is read here. The cheap commands (`validate`,
`run --dry-run`, `--help`, `--version`, and `status` and `report` on a run this test makes) run
as written, from the repository's root; a block whose first line is `# slow:` (real work) or
`# template:` (placeholders) is not run, but its batch-style commands must parse and the
repository files they name must exist. A cheap block with anything else in it fails: mark it.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from batch_style import cli
from batch_style import orchestrator as runner
from batch_style.settings import FIELDS
from batch_style.text import number

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MANIFESTS = sorted((REPO / "jobs").glob("*.yaml"))
SHELLS = ("sh", "bash", "shell", "console")
# Small and quick with the tiny VGG19: a made run for `status` and `report`, and its files.
TINY = {"size": 64, "steps": 1, "frame_steps": 1, "optimizer": "adam", "snapshot_every": 1}


@dataclasses.dataclass(frozen=True)
class Block:
    doc: Path
    line: int               # of the opening fence
    lang: str
    text: str

    @property
    def kind(self) -> str:
        first = self.text.split("\n", 1)[0]
        return next((k for k in ("slow", "template") if first.startswith(f"# {k}:")), "cheap")

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"

    def commands(self) -> list[list[str]]:
        """Each command as words: continuation lines joined, comments gone, `a && b` split,
        `VAR=value` prefixes dropped."""
        commands = []
        for line in self.text.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                command, words = words[:cut], words[cut + 1:]
                while command and re.fullmatch(r"[A-Z_]+=\S*", command[0]):
                    command = command[1:]
                if command:
                    commands.append(command)
        return commands


def blocks(langs=SHELLS) -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
            if m.group(1) in langs:
                found.append(Block(doc, text.count("\n", 0, m.start()) + 1, m.group(1),
                                   m.group(2)))
    return found


SHELL_BLOCKS = blocks()
BATCH_STYLE = [(b, c) for b in SHELL_BLOCKS for c in b.commands()
               if c[0] in (".venv/bin/batch-style", "batch-style")]


def ids(items) -> list[str]:
    return [f"{b.where}:{' '.join(c[1:3])}" for b, c in items]


def parse(words: list[str]):
    return cli.build_parser().parse_args(words)


def manifest_outputs() -> dict[Path, Path]:
    """The output folder of each manifest in jobs/, as a path from the repository's root."""
    outputs = {}
    for path in MANIFESTS:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        outputs[(path.parent / data["output"]).resolve()] = path
    return outputs


def _absolute(value, base: Path):
    """Paths of a manifest's value made absolute: a path, a list of them, or a style with its
    masks ({image, mask, image_mask})."""
    if isinstance(value, list):
        return [_absolute(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _absolute(v, base) for k, v in value.items()}
    return str((base / value).resolve()) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """made(manifest) → the output folder of a tiny run of that manifest of jobs/ (its jobs,
    small settings, each video's first 0.2 s), made once."""
    runs: dict[Path, Path] = {}

    def make(manifest: Path) -> Path:
        if manifest not in runs:
            data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
            folder = tmp_path_factory.mktemp(manifest.stem)
            for job in data["jobs"]:
                for key in ("content", "style", "video", "protect"):
                    if key in job:
                        job[key] = _absolute(job[key], manifest.parent)
                job["settings"] = {k: v for k, v in (job.get("settings") or {}).items()
                                   if k not in TINY}
                if "video" in job:
                    job.update(start=0.0, end=0.2)
            data.update(output=str(folder / "out"), defaults=TINY)
            tiny = folder / manifest.name
            tiny.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
            summary = runner.run([tiny], runner.RunOptions(tiny=True, workers=0))
            assert summary.exit_code == 0, summary.failed
            runs[manifest] = folder / "out"
        return runs[manifest]
    return make


# -- the blocks ---------------------------------------------------------------------------------
def test_the_docs_have_command_blocks():
    kinds = {b.kind for b in SHELL_BLOCKS}
    assert kinds == {"cheap", "slow", "template"} and len(BATCH_STYLE) >= 10


@pytest.mark.parametrize("block", [b for b in SHELL_BLOCKS if b.kind == "cheap"],
                         ids=lambda b: b.where)
def test_a_block_not_marked_slow_is_cheap(block):
    for words in block.commands():
        assert words[0] in (".venv/bin/batch-style", "batch-style"), \
            f"{block.where}: `{' '.join(words)}` is not cheap: mark the block `# slow:`"
        args = parse(words[1:])
        cheap = args.command in ("validate", "status", "report") or \
            (args.command == "run" and args.dry_run)
        assert cheap, f"{block.where}: `{' '.join(words)}` runs real work: mark it `# slow:`"


@pytest.mark.parametrize("block, words", BATCH_STYLE, ids=ids(BATCH_STYLE))
def test_every_batch_style_command_parses_and_names_files_that_exist(block, words, monkeypatch):
    monkeypatch.chdir(REPO)
    expanded = [w for word in words[1:] for w in (sorted(str(p.relative_to(REPO)) for p in
                                                        REPO.glob(word)) if "*" in word else [word])]
    args = parse(expanded)
    inputs = {"run": "manifest", "validate": "manifest", "stylize": "style"}.get(args.command)
    named = list(getattr(args, inputs, [])) if inputs else []
    if args.command == "stylize":
        named.append(args.content)
    if getattr(args, "weights", None):
        named.append(args.weights)
    for name in named:
        if block.kind == "template" and Path(name).is_absolute():
            continue  # a placeholder: the user's own file
        assert (REPO / name).is_file(), f"{block.where}: no such file {name}"
    if args.command in ("status", "report"):
        assert (REPO / args.output).resolve() in manifest_outputs(), \
            f"{block.where}: {args.output} is no manifest's output folder in jobs/"


CHEAP = [(b, c) for b, c in BATCH_STYLE if b.kind == "cheap"]


@pytest.mark.parametrize("block, words", CHEAP, ids=ids(CHEAP))
def test_cheap_commands_run_as_written(block, words, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    expanded = [w for word in words[1:] for w in (sorted(str(p.relative_to(REPO)) for p in
                                                        REPO.glob(word)) if "*" in word else [word])]
    assert cli.main(expanded) == 0, capsys.readouterr().err
    assert capsys.readouterr().out


STATE = [(b, c) for b, c in BATCH_STYLE if c[1] in ("status", "report")]


@pytest.mark.parametrize("block, words", STATE, ids=ids(STATE))
def test_status_and_report_run_on_a_made_run(block, words, made, capsys):
    output = made(manifest_outputs()[(REPO / words[2]).resolve()])
    assert cli.main([words[1], str(output), *words[3:]]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    if words[1] == "status":
        assert f"{output}: " in out and " 0 failed, 0 pending" in out
    else:
        assert out == f"wrote {output / 'report.html'}\n"


def test_every_command_has_help_and_a_row_in_the_readme(capsys):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for command in cli.build_parser().commands:
        with pytest.raises(SystemExit) as exit_:
            cli.main([command, "--help"])
        assert exit_.value.code == 0 and capsys.readouterr().out.startswith(
            f"usage: batch-style {command} ")
        assert f"| `batch-style {command} " in readme, f"{command} is not in the command table"
    assert "| `batch-style --version` |" in readme


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: b.where)
def test_make_targets_and_extras_named_exist(block):
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
    extras = set(re.findall(r"^(\w+) = \[", (REPO / "pyproject.toml").read_text(), re.M))
    for words in block.commands():
        if words[0] == "make":
            assert set(words[1:]) <= targets, f"{block.where}: no make target {words[1:]}"
        for extra in re.findall(r"\.\[([\w,]+)\]", " ".join(words)):
            assert set(extra.split(",")) <= extras, f"{block.where}: no extra [{extra}]"


# -- manifests, files, links ------------------------------------------------------------------------
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_in_jobs_validates(manifest, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert cli.main(["validate", str(manifest.relative_to(REPO))]) == 0, capsys.readouterr().err


def test_jobs_has_the_manifests_the_readme_promises():
    assert {p.name for p in MANIFESTS} >= {"demo.yaml", "night.yaml", "folder.yaml", "video.yaml",
                                           "blend.yaml"}


def test_a_manifest_shown_in_the_docs_is_its_file_verbatim():
    shown = [b for b in blocks(("yaml",)) if re.match(r"# jobs/[\w.-]+\.yaml", b.text)]
    assert shown, "the README's manifest reference names its file in jobs/"
    for block in shown:
        name = block.text.split(":", 1)[0][2:]
        assert block.text == (REPO / name).read_text(encoding="utf-8"), block.where


def test_links_to_repository_files_resolve():
    for doc in DOCS + [REPO / "ARCHITECTURE.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if not re.match(r"[a-z]+:", target):
                assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"


def test_the_settings_table_shows_every_default_as_help_does():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", readme, re.M))
    assert set(rows) >= set(FIELDS), set(FIELDS) - set(rows)
    for name, f in FIELDS.items():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        cell = rows[name].strip().strip("`")
        said = re.search(r"\(default: ([^)]+)\)", f.metadata["help"])  # frame_steps: steps / 5
        if said:
            assert cell == said.group(1), (name, cell)
        elif default is None:
            assert cell in ("none", "equal"), name
        elif isinstance(default, tuple):
            assert cell == f"[{', '.join(default)}]", name
        else:
            assert cell.split(" (")[0] == number(default), (name, cell)


# -- the output folder --------------------------------------------------------------------------------
def tree_patterns(doc: Path) -> list[re.Pattern]:
    """The documented layout of OUTPUT/ (the `OUTPUT/` block of `doc`) as patterns of paths under
    it: capitals are names (JOB, STEM, PID, KEY, N, WxH), digits any number, `X/` anything in X."""
    text = doc.read_text(encoding="utf-8")
    block = re.search(r"^```text\nOUTPUT/\n(.*?)^```", text, re.M | re.S).group(1)
    stack: list[tuple[int, str]] = []
    entries: list[tuple[int, str]] = []     # (indent, path under OUTPUT)
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        entry = line.strip().split()[0] if line.strip() else ""
        if not entry or indent > 2 * (len(stack) + 1):
            continue  # a description's second line
        stack = [(i, e) for i, e in stack if i < indent]
        entries.append((indent, "".join(e for _, e in stack) + entry))
        stack.append((indent, entry))
    patterns = []
    for n, (indent, path) in enumerate(entries):
        if path.endswith("/") and n + 1 < len(entries) and entries[n + 1][0] > indent:
            continue  # a folder whose files are listed: those say what is in it
        regex = re.sub(r"[A-Z][A-Za-z]*|\d+", lambda m: "[^/]+" if m.group()[0].isalpha()
                       else r"\d+", re.escape(path).replace(r"\-", "-"))
        patterns.append(re.compile(regex + (".*" if path.endswith("/") else "")))
    return patterns


def test_the_documented_layout_holds_every_file_a_run_writes(made):
    # The output tree is written once, in docs/design.md (the README links to it).
    doc = "docs/design.md"
    patterns = tree_patterns(REPO / doc)
    assert len(patterns) > 10
    output = made(REPO / "jobs" / "night.yaml")  # every kind of output
    files = [p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file()]
    assert {"report.html", "run.log", ".batch_style/lock", "clip/realshort.mp4"} <= set(files)
    for name in files:
        assert any(p.fullmatch(name) for p in patterns), f"{doc} does not document {name}"


def test_the_readmes_error_example_is_what_validate_says(tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    example = re.search(r"^(jobs/night\.yaml:\d+: .*frame_stpes.*)$", readme, re.M).group(1)
    (tmp_path / "jobs").mkdir()
    (tmp_path / "samples").symlink_to(REPO / "samples")
    night = (REPO / "jobs" / "night.yaml").read_text(encoding="utf-8")
    (tmp_path / "jobs" / "night.yaml").write_text(night.replace("frame_steps:", "frame_stpes:"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["validate", "jobs/night.yaml"]) == 2
    assert capsys.readouterr().err.splitlines() == [example]


@pytest.mark.parametrize("doc", DOCS + [REPO / "ARCHITECTURE.md"], ids=lambda d: d.name)
def test_every_table_has_its_header_row(doc):
    lines = doc.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if re.fullmatch(r"\|( *:?-+:? *\|)+", line.strip()):
            header = lines[i - 1].replace("\\|", "") if i else ""  # \| is a cell's text
            assert header.startswith("|") and header.count("|") == line.count("|"), \
                f"{doc.name}:{i + 1}: a table without its header row"


def test_the_readme_stays_short_enough_to_read():
    # A new user reads it whole: detail belongs in docs/ (the output tree is in docs/design.md).
    assert len((REPO / "README.md").read_bytes()) <= 20 * 1024
