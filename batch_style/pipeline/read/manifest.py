"""Load and validate YAML job manifests (version 1) into frozen Jobs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node, SequenceNode

from batch_style.errors import UserError, UserErrors
from batch_style.pipeline.jobs import Job, Manifest
from batch_style.pipeline.read.job_fields import JOB_NAME, Given, JobReader, SettingsReader
from batch_style.pipeline.read.media_probe import Media
from batch_style.pipeline.read.overwrites import unwritable
from batch_style.pipeline.read.paths import Files
from batch_style.pipeline.read.yaml_nodes import (
    INVALID,
    SEQ,
    Nodes,
    compose,
    describe,
    got,
    read_text,
    scalar_entry,
)
from batch_style.pipeline.state import run_folder
from batch_style.settings import BACKENDS, INITS, choose_backend

VERSION = 1
TOP_KEYS = ("version", "output", "defaults", "jobs", "backend", "scheduler")
EMPTY = "empty manifest; expected a mapping with 'version', 'output' and 'jobs'"


def load(path: str | os.PathLike, *, verify_pixels: bool = False) -> Manifest:
    """Read and check one manifest; raises UserErrors listing every problem found.

    Images are checked from their headers (kind, size); with `verify_pixels` their data is read
    too, so that a truncated or corrupt image is a problem of the manifest (`validate`) rather
    than the failure of its unit (`run`, which goes on with the other units).
    """
    manifest, errors = _load(path, verify_pixels)
    if errors:
        raise UserErrors(errors)
    return manifest


def load_all(paths: Iterable[str | os.PathLike | Mapping], *, verify_pixels: bool = False,
             overrides: Mapping[str, Any] | None = None) -> list[Manifest]:
    """Read and check several manifests; raises UserErrors with the problems of all of them.

    Besides each manifest's own problems, two manifests may not write a job of the same name
    into the same output folder (each would overwrite, and mark done, the other's results).
    `verify_pixels`: as for load(). `overrides`: checked settings (the command line's) over
    every job's own. A mapping in `paths` is a manifest as the YAML would read (the library's).
    """
    loaded: list[tuple[str, Manifest]] = []
    errors: list[UserError] = []
    seen: set[str] = set()
    for path in paths:
        # The same manifest named twice would collide with itself; running it once is what's meant.
        key = str(id(path)) if isinstance(path, Mapping) else \
            os.path.realpath(os.path.expanduser(path))
        if key in seen:
            continue
        seen.add(key)
        manifest, problems = _load(path, verify_pixels, overrides or {})
        errors += problems
        if manifest is not None:
            loaded.append((MAPPING if isinstance(path, Mapping) else os.fspath(path), manifest))
    errors += _collisions(loaded)
    if errors:
        raise UserErrors(errors)
    return [manifest for _, manifest in loaded]


def _collisions(loaded: list[tuple[str, Manifest]]) -> list[UserError]:
    first: dict[tuple[str, str], tuple[str, int]] = {}
    errors = []
    for shown, manifest in loaded:
        for index, job in enumerate(manifest.jobs):
            key = (os.path.realpath(manifest.output), job.name)
            if key in first:
                other, line = first[key]
                errors.append(UserError(
                    f"job {job.name!r} writes into the same folder, "
                    f"'{manifest.output / job.name}', as the job on {other}:{line}",
                    file=shown, line=job.line, field=f"jobs[{index}].name"))
            else:
                first[key] = (shown, job.line)
    return errors


MAPPING = "manifest"  # how a manifest given as a mapping (the library's run) is named in errors


def _load(path: str | os.PathLike | Mapping, verify_pixels: bool = False,
          overrides: Mapping[str, Any] | None = None) -> tuple[Manifest | None, list[UserError]]:
    if isinstance(path, Mapping):
        # A mapping is read as the YAML it would be, its paths relative to the current folder.
        shown, file = MAPPING, Path.cwd() / f"{MAPPING}.yaml"
    else:
        shown = os.fspath(path)
        file = Path(os.path.abspath(os.path.expanduser(shown)))
    try:
        text = yaml.safe_dump(dict(path), sort_keys=False) if isinstance(path, Mapping) \
            else read_text(file, shown)
        root = compose(text, shown)
    except yaml.YAMLError as error:  # a mapping holding what YAML cannot write
        return None, [UserError(f"cannot be written as YAML: {error}", file=shown)]
    except UserError as error:
        return None, [error]
    reader = _ManifestReader(shown, file.parent, verify_pixels, overrides or {})
    manifest = reader.manifest(root, file)
    errors = _unique(reader.nodes.errors)
    return (None if errors else manifest), errors


def _unique(errors: list[UserError]) -> list[UserError]:
    """Errors in line order, each once (a bad `defaults` entry is found again for every job)."""
    seen, out = set(), []
    for error in sorted(errors, key=lambda e: e.line or 0):
        if str(error) not in seen:
            seen.add(str(error))
            out.append(error)
    return out


class _ManifestReader:
    """Walks one manifest: its top-level keys, then each job (JobReader)."""

    def __init__(self, shown: str, folder: Path, verify_pixels: bool = False,
                 overrides: Mapping[str, Any] | None = None):
        self.nodes = Nodes(shown)
        self.files = Files(self.nodes, folder)
        self.media = Media(self.nodes, self.files, verify_pixels)
        self.settings = SettingsReader(self.nodes, self.files, overrides or {})
        self.job_reader = JobReader(self.nodes, self.files, self.media, self.settings)

    def manifest(self, root: Node | None, file: Path) -> Manifest | None:
        if root is None:  # an empty file, or only comments
            self.nodes.error(1, "", EMPTY)
            return None
        top = self.nodes.entries(root, "", TOP_KEYS,
                                 "a mapping with 'version', 'output' and 'jobs'",
                                 settings_under="defaults")
        if top is None:
            return None
        self.version(top, root)
        output = self.output(top, root)
        self.files.out = output
        defaults = self.settings.settings_layer(top["defaults"][1], "defaults") if "defaults" in top else {}
        jobs = self.jobs(top, root, defaults)
        if output is not None and (output.is_dir() or not output.exists()):
            self.check_run_folder(top["output"][1])
            self.check_overwrites(jobs)
        backend, scheduler = self.backend(top)
        if self.nodes.errors:
            return None
        return Manifest(path=file, output=output, jobs=jobs, backend=backend, scheduler=scheduler)

    def backend(self, top: dict) -> tuple[str | None, str | None]:
        """`backend: local | dask` and `scheduler: ADDRESS` (the command line's options win)."""
        # Imported here: backends imports worker, which imports plan, which imports this module.
        given = {}
        for name in ("backend", "scheduler"):
            if name in top:
                node = top[name][1]
                value = self.nodes.value(node, name)
                if value is not INVALID and (not isinstance(value, str) or not value.strip()
                                             or any(c.isspace() for c in value)):
                    what = "one of " + ", ".join(BACKENDS) if name == "backend" else \
                        "an address like tcp://HOST:8786"
                    self.nodes.error(node, name, f"expected {what}, {got(value)}")
                elif value is not INVALID:
                    given[name] = (value, node)
        backend, scheduler = (given.get(name, (None, None))[0] for name in ("backend", "scheduler"))
        try:
            choose_backend(None, None, backend, scheduler)
        except UserError as error:
            node = given["backend"][1]
            self.nodes.error(node, "backend", error.message)
        return backend, scheduler

    def version(self, top: dict, root: Node) -> None:
        if "version" not in top:
            self.nodes.error(root, "version", f"missing; expected 'version: {VERSION}'")
            return
        node = top["version"][1]
        value = self.nodes.value(node, "version")
        if value is not INVALID and (type(value) is not int or value != VERSION):
            self.nodes.error(node, "version",
                             f"unsupported manifest version {value!r}; expected {VERSION}")

    def output(self, top: dict, root: Node) -> Path | None:
        if "output" not in top:
            self.nodes.error(root, "output", "missing; expected the results folder, e.g. 'output: out'")
            return None
        node = top["output"][1]
        value = self.nodes.value(node, "output")
        if value is INVALID:
            return None
        if not isinstance(value, str) or not value.strip():
            self.nodes.error(node, "output", f"expected a folder path, {got(value)}")
            return None
        path = self.files.checked_path(value, node, "output")
        if path is not None and path.exists() and not path.is_dir():
            self.nodes.error(node, "output", f"{value!r} exists and is not a folder")
        elif path is not None and (problem := unwritable(path, self.files.shown_path)):
            self.nodes.error(node, "output", f"{value!r}: {problem}")
        return path

    def jobs(self, top: dict, root: Node, defaults: dict[str, Given]) -> tuple[Job, ...]:
        if "jobs" not in top:
            self.nodes.error(root, "jobs", "missing; expected a non-empty list of jobs")
            return ()
        node = top["jobs"][1]
        if not isinstance(node, SequenceNode) or node.tag != SEQ or not node.value:
            self.nodes.error(node, "jobs", f"expected a non-empty list of jobs, got {describe(node)}")
            return ()
        names: dict[str, tuple[str, int]] = {}  # casefolded name -> (name, line)
        if self.files.out is not None:
            self.files.result_dirs = {os.path.realpath(run_folder.state_dir(self.files.out)): ""}
            for item in node.value:
                name = scalar_entry(item, "name")
                if name is not None and JOB_NAME.fullmatch(name):
                    self.files.result_dirs[os.path.realpath(self.files.out / name)] = name
        jobs = (self.job_reader.job(i, item, defaults, names) for i, item in enumerate(node.value))
        return tuple(job for job in jobs if job is not None)

    def check_run_folder(self, output_node: Node) -> None:
        """The paths the run will write (run_folder.problems): never a symbolic link out of the
        output folder, nothing but folders and regular files. Shown at the job they belong to."""
        for path, message, job in run_folder.problems(self.files.out, self.job_reader.names):
            node, field = self.job_reader.names[job] if job else (output_node, "output")
            self.nodes.error(node, field, f"'{self.files.shown_path(path)}' {message}")

    def check_overwrites(self, jobs: Iterable[Job]) -> None:
        """No result may be written over an input of this manifest (a style or an init image
        in another job's results folder, under the name of one of that job's results)."""
        outputs: dict[str, str] = {}
        for job in jobs:
            for path in run_folder.result_paths(job, self.files.out):
                outputs[os.path.realpath(path)] = job.name
        for job in jobs:
            node, field = self.job_reader.names.get(job.name, (None, None))
            inputs = [*job.contents, *job.styles, *([job.video] if job.video else []),
                      *(p for p in job.masks.files() if not p.is_dir())]
            if job.settings.init not in INITS:
                inputs.append(Path(job.settings.init))
            for path in inputs:
                other = outputs.get(os.path.realpath(path))
                if other is not None:
                    self.nodes.error(node, field, f"'{self.files.shown_path(path)}', an input of this job, "
                                     f"would be overwritten by a result of job '{other}'; "
                                     f"choose another `output` folder")
