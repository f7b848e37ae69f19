"""Bad and hostile input, through the command line: one line per problem, the right exit code,
no traceback, nothing executed, nothing written.

The corpus is data: MANIFEST_CASES, MEDIA_CASES, HOSTILE_CASES and WEIGHTS_CASES, one test each
(`pytest --collect-only -q tests/test_hardening.py` counts them). Every case is built in one
temporary folder shared by the module; each manifest writes to its own `out/CASE`.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batch_style import cli
from batch_style.engine.model import VGG19_SHAPES
from batch_style.errors import UserError
from batch_style.media import encode, video
from batch_style.pipeline.read import manifest

MARKER = "executed"  # a hostile case that ran anything would create this file in the corpus

# ---------------------------------------------------------------------------------------------
# The corpus


@dataclass(frozen=True)
class Case:
    """A manifest and the problem lines `validate` must print for it, in order.

    `text` may use @OUT (this case's output folder), @MARKER and @ELSEWHERE (a folder outside
    every output folder); None writes no file. `expect` holds (line, field, text in the message)
    per problem; None where a problem has no line or no field. `setup(folder, out)` makes what
    the case needs besides the manifest.
    """

    id: str
    text: str | bytes | None
    expect: tuple[tuple[int | None, str | None, str], ...]
    setup: Callable[[Path, Path], None] | None = None
    path: str | None = None  # the manifest's name (default ID.yaml); absolute for /dev/zero


def job(body: str, defaults: str = "") -> str:
    """A manifest with one header (lines 1-3, or 1-4 with defaults) and the given jobs."""
    head = "version: 1\noutput: @OUT\n"
    if defaults:
        head += f"defaults: {defaults}\n"
    return head + "jobs:\n" + textwrap.dedent(body).lstrip("\n")


PAIR = "  - {name: a, content: c.png, style: s.png}\n"  # a good job, on line 4


def with_settings(settings: str, content: str = "c.png", style: str = "s.png") -> str:
    """One image job (line 4: content 5, style 6) whose settings (line 7) are `settings`."""
    return job(f"""
        - name: a
          content: {content}
          style: {style}
          settings: {settings}
        """)


def clip_job(extra: str, clip: str = "clip.mp4") -> str:
    """One video job (line 4: video 5, style 6) with `extra` keys from line 7 on."""
    lines = ["- name: v", f"  video: {clip}", "  style: s.png",
             *("  " + line for line in textwrap.dedent(extra).splitlines())]
    return job("\n".join(lines) + "\n")


MANIFEST_CASES = [
    # -- YAML itself
    Case("yaml-bad-indent", job("""
        - name: a
          content: c.png
         style: s.png
        """), ((6, None, "invalid YAML"),)),
    Case("yaml-unclosed-flow", "version: 1\noutput: @OUT\njobs: [{name: a, content: c.png\n",
         ((4, None, "invalid YAML"),)),
    Case("yaml-tab-indent", "version: 1\noutput: @OUT\njobs:\n\t- {name: a}\n",
         ((4, None, "invalid YAML: found character '\\t'"),)),
    Case("yaml-duplicate-key", job("""
        - name: a
          content: c.png
          style: s.png
          content: c.png
        """), ((7, "jobs[0].content", "duplicate key (first on line 5)"),)),
    Case("empty-file", "", ((1, None, "empty manifest"),)),
    Case("only-comments", "# nothing here yet\n", ((1, None, "empty manifest"),)),
    Case("not-a-mapping", "- a\n- b\n", ((1, None, "expected a mapping with 'version'"),)),
    Case("not-utf8", b"version: 1\noutput: \xff\xfe out\n", ((2, None, "not UTF-8 text"),)),
    Case("missing-manifest", None, ((None, None, "no such file"),)),
    Case("manifest-is-a-folder", None, ((None, None, "is a folder"),),
         setup=lambda folder, out: (folder / "manifest-is-a-folder.yaml").mkdir()),
    # -- keys
    Case("unknown-top-key", job(PAIR) + "colour: red\n",
         ((5, "colour", "unknown key; expected one of version, output, defaults, jobs"),)),
    Case("unknown-job-key", job("""
        - name: a
          content: c.png
          stlye: s.png
        """), ((4, "jobs[0].style", "missing"),
               (6, "jobs[0].stlye", "unknown key (did you mean 'style'?)"))),
    Case("unknown-setting", with_settings("{stpes: 3}"),
         ((7, "jobs[0].settings.stpes", "unknown setting (did you mean 'steps'?)"),)),
    Case("version-2", job(PAIR).replace("version: 1", "version: 2"),
         ((1, "version", "unsupported manifest version 2; expected 1"),)),
    Case("version-missing", job(PAIR).replace("version: 1\n", ""),
         ((1, "version", "missing; expected 'version: 1'"),)),
    Case("output-missing", job(PAIR).replace("output: @OUT\n", ""),
         ((1, "output", "missing; expected the results folder"),)),
    Case("output-is-a-file", job(PAIR).replace("@OUT", "c.png"),
         ((2, "output", "'c.png' exists and is not a folder"),)),
    Case("jobs-not-a-list", "version: 1\noutput: @OUT\njobs: {a: 1}\n",
         ((3, "jobs", "expected a non-empty list of jobs, got a mapping"),)),
    Case("jobs-empty", "version: 1\noutput: @OUT\njobs: []\n",
         ((3, "jobs", "expected a non-empty list of jobs, got a list"),)),
    Case("jobs-null", "version: 1\noutput: @OUT\njobs:\n",
         ((3, "jobs", "expected a non-empty list of jobs, got nothing"),)),
    # -- types
    Case("type-size-text", job(PAIR, defaults="{size: big}"),
         ((3, "defaults.size", "expected a whole number, got 'big' (str)"),)),
    Case("type-steps-fraction", with_settings("{steps: 1.5}"),
         ((7, "jobs[0].settings.steps", "expected a whole number, got 1.5 (float)"),)),
    Case("type-bool-text", with_settings("{warm_start: 'yes'}"),
         ((7, "jobs[0].settings.warm_start", "expected true or false, got 'yes'"),)),
    Case("type-colors-text", with_settings("{preserve_colors: 'yes'}"),
         ((7, "jobs[0].settings.preserve_colors", "expected true, false, luminance or histogram, "
                                                  "got 'yes' (str)"),)),
    Case("type-weight-list", with_settings("{content_weight: [1]}"),
         ((7, "jobs[0].settings.content_weight", "expected a number, got [1] (list)"),)),
    Case("type-layers-number", with_settings("{style_layers: 5}"),
         ((7, "jobs[0].settings.style_layers", "expected a non-empty list of VGG19 layer"),)),
    Case("type-name-number", job("  - {name: 5, content: c.png, style: s.png}\n"),
         ((4, "jobs[0].name", "expected text, got 5 (int)"),)),
    Case("type-style-mapping", job("  - {name: a, content: c.png, style: {x: 1}}\n"),
         ((4, "jobs[0].style.x", "unknown key; expected one of image, mask, image_mask"),
          (4, "jobs[0].style.image", "missing; expected the style image"))),
    Case("type-style-image-list", job("  - {name: a, content: c.png, style: {image: [s.png]}}\n"),
         ((4, "jobs[0].style.image", "expected an image file, got ['s.png'] (list)"),)),
    Case("type-mask-number", job("  - {name: a, content: c.png, style: {image: s.png, "
                                 "mask: 5}}\n"),
         ((4, "jobs[0].style.mask", "expected a mask image or a folder of them, got 5 (int)"),)),
    Case("type-start-text", clip_job("start: '0:01'\n"),
         ((7, "jobs[0].start", "expected a number of seconds, got '0:01' (str)"),)),
    Case("type-output-number", job(PAIR).replace("@OUT", "5"),
         ((2, "output", "expected a folder path, got 5 (int)"),)),
    Case("type-job-not-a-mapping", job("  - just a name\n"),
         ((4, "jobs[0]", "expected a mapping with 'name'"),)),
    # -- out-of-range numbers
    Case("range-size-absurd", with_settings("{size: 100000}"),
         ((7, "jobs[0].settings.size", "expected a value between 16 and 8192, got 100000"),)),
    Case("range-size-tiny", with_settings("{size: 8}"),
         ((7, "jobs[0].settings.size", "between 16 and 8192, got 8"),)),
    Case("range-size-infinite", with_settings("{size: .inf}"),
         ((7, "jobs[0].settings.size", "expected a whole number, got inf"),)),
    Case("range-weight-nan", with_settings("{content_weight: .nan}"),
         ((7, "jobs[0].settings.content_weight", "expected a finite number, got nan"),)),
    Case("range-steps-negative", with_settings("{steps: -1}"),
         ((7, "jobs[0].settings.steps", "between 1 and 100000, got -1"),)),
    Case("range-learning-rate-zero", with_settings("{learning_rate: 0}"),
         ((7, "jobs[0].settings.learning_rate", "between 1e-06 and 10.0, got 0.0"),)),
    Case("range-style-scale", with_settings("{style_scale: 100}"),
         ((7, "jobs[0].settings.style_scale", "between 0.05 and 8.0, got 100.0"),)),
    Case("range-scales", with_settings("{scales: 99}"),
         ((7, "jobs[0].settings.scales", "between 1 and 6, got 99"),)),
    Case("range-seed-negative", with_settings("{seed: -1}"),
         ((7, "jobs[0].settings.seed", "got -1"),)),
    Case("range-max-pixels-zero", with_settings("{max_pixels: 0}"),
         ((7, "jobs[0].settings.max_pixels", "got 0"),)),
    Case("range-video-start-negative", clip_job("start: -1\n"),
         ((7, "jobs[0].start", "expected a value >= 0, got -1"),)),
    Case("range-video-fps-zero", clip_job("fps: 0\n"),
         ((7, "jobs[0].fps", "expected at least 1 frame per second, got 0"),)),
    Case("range-video-end-before-start", clip_job("start: 0.5\nend: 0.2\n"),
         ((8, "jobs[0].end", "expected a value > start (0.5), got 0.2"),)),
    Case("range-video-start-past-end", clip_job("start: 5\n"),
         ((7, "jobs[0].start", "expected a value before the end of the video (1 s), got 5"),)),
    # -- unknown names
    Case("unknown-optimizer", with_settings("{optimizer: sgd}"),
         ((7, "jobs[0].settings.optimizer", "unknown value 'sgd'; expected one of lbfgs, adam"),)),
    Case("unknown-layer", with_settings("{content_layers: [block6_conv1]}"),
         ((7, "jobs[0].settings.content_layers", "unknown VGG19 layer 'block6_conv1'"),)),
    Case("unknown-output-format", job("  - {name: a, content: c.png, style: s.png, "
                                      "outputs: [png]}\n"),
         ((4, "jobs[0].outputs[0]", "unknown output format 'png' for image jobs"),)),
    Case("output-format-of-videos", job("  - {name: a, content: c.png, style: s.png, "
                                        "outputs: [mp4]}\n"),
         ((4, "jobs[0].outputs[0]", "('mp4' is for video jobs)"),)),
    Case("unknown-pooling", with_settings("{pooling: mean}"),
         ((7, "jobs[0].settings.pooling", "unknown value 'mean'; expected one of max, avg"),)),
    Case("unknown-colour-method", with_settings("{preserve_colors: histogramm}"),
         ((7, "jobs[0].settings.preserve_colors", "got 'histogramm' (str) (did you mean "
                                                  "'histogram'?)"),)),
    Case("unknown-style-key", job("  - {name: a, content: c.png, style: [s.png, "
                                  "{image: s.png, msk: m.png}]}\n"),
         ((4, "jobs[0].style[1].msk", "unknown key (did you mean 'mask'?)"),)),
    Case("unknown-protect-key", job("""
        - name: a
          content: c.png
          style: s.png
          protcet: m.png
        """), ((7, "jobs[0].protcet", "unknown key (did you mean 'protect'?)"),)),
    Case("range-protect-weight", with_settings("{protect_weight: 0.5}"),
         ((7, "jobs[0].settings.protect_weight", "between 1.0 and 1000000.0, got 0.5"),)),
    Case("unknown-preset", with_settings("{preset: turbo}"),
         ((7, "jobs[0].settings.preset", "unknown preset 'turbo'; expected one of seed, draft"),)),
    # -- jobs that do not add up
    Case("duplicate-job-names", job(PAIR + PAIR),
         ((5, "jobs[1].name", "duplicate job name 'a' (first on line 4)"),)),
    Case("missing-content-and-video", job("  - {name: a, style: s.png}\n"),
         ((4, "jobs[0]", "missing 'content' or 'video'"),)),
    Case("missing-style", job("  - {name: a, content: c.png}\n"),
         ((4, "jobs[0].style", "missing; expected a style image"),)),
    Case("missing-name", job("  - {content: c.png, style: s.png}\n"),
         ((4, "jobs[0].name", "missing; every job needs a unique name"),)),
    Case("content-and-video", job("  - {name: a, content: c.png, video: clip.mp4, "
                                  "style: s.png}\n"),
         ((4, "jobs[0]", "give either 'content' or 'video', not both"),)),
    Case("style-blend-length", job("""
        - name: a
          content: c.png
          style: [s.png, s.png]
          style_blend: [1, 2, 3]
        """), ((7, "jobs[0].style_blend", "expected 2 weights (one per style), got 3"),)),
    Case("style-layer-weights-length", with_settings("{style_layer_weights: [1, 2]}"),
         ((7, "jobs[0].settings.style_layer_weights", "expected 5 weights (one per style layer)"),)),
    Case("video-key-on-image-job", job("  - {name: a, content: c.png, style: s.png, "
                                       "start: 1}\n"),
         ((4, "jobs[0].start", "only for video jobs"),)),
    Case("colours-both-ways", with_settings("{preserve_colors: true, style_colors: true}"),
         ((7, "jobs[0].settings.style_colors", "the opposite of preserve_colors"),)),
    Case("style-mask-without-image", job("  - {name: a, content: c.png, style: {mask: m.png}}\n"),
         ((4, "jobs[0].style.image", "missing; expected the style image"),)),
    # -- missing files and empty folders
    Case("missing-content-file", job("  - {name: a, content: nope.png, style: s.png}\n"),
         ((4, "jobs[0].content", "no such file or folder 'nope.png'"),)),
    Case("missing-style-file", job("  - {name: a, content: c.png, style: [s.png, nope.png]}\n"),
         ((4, "jobs[0].style[1]", "no such file 'nope.png'"),)),
    Case("missing-video-file", job("  - {name: a, video: nope.mp4, style: s.png}\n"),
         ((4, "jobs[0].video", "no such file 'nope.mp4'"),)),
    Case("missing-init-file", with_settings("{init: nope.png}"),
         ((7, "jobs[0].settings.init", "no such file 'nope.png'"),)),
    Case("glob-matches-nothing", job("  - {name: a, content: 'photos/*.jpg', style: s.png}\n"),
         ((4, "jobs[0].content", "glob 'photos/*.jpg' matches no images"),)),
    Case("empty-folder", job("  - {name: a, content: empty/, style: s.png}\n"),
         ((4, "jobs[0].content", "no images in folder 'empty/'"),)),
    Case("folder-without-images", job("  - {name: a, content: notimg, style: s.png}\n"),
         ((4, "jobs[0].content", "no images in folder 'notimg'"),)),
    Case("style-is-a-folder", job("  - {name: a, content: c.png, style: empty}\n"),
         ((4, "jobs[0].style", "'empty' is a folder; expected a file"),)),
    Case("missing-style-mask", job("""
        - name: a
          content: c.png
          style: [{image: s.png, mask: m.png}, {image: s.png, mask: nope.png}]
        """), ((6, "jobs[0].style[1].mask", "no such file or folder 'nope.png'"),)),
    Case("missing-image-mask", job("  - {name: a, content: c.png, style: {image: s.png, "
                                   "image_mask: nope.png}}\n"),
         ((4, "jobs[0].style.image_mask", "no such file 'nope.png'"),)),
    Case("missing-protect", job("  - {name: a, content: c.png, style: s.png, "
                                "protect: nope.png}\n"),
         ((4, "jobs[0].protect", "no such file or folder 'nope.png'"),)),
    Case("missing-video-mask", clip_job("protect: nope.mp4\n"),
         ((7, "jobs[0].protect", "no such file 'nope.mp4'"),)),
    Case("mask-folder-lacks-a-photo", job("  - {name: a, content: photos, style: s.png, "
                                          "protect: pmasks}\n"),
         ((4, "jobs[0].protect", "no mask for 'p.png' in 'pmasks' (a mask is found by its "
                                 "photo's name without the extension, e.g. 'p.png')"),)),
    Case("mask-folder-empty", job("  - {name: a, content: photos, style: s.png, "
                                  "protect: empty}\n"),
         ((4, "jobs[0].protect", "no images in mask folder 'empty'"),)),
    Case("mask-folder-for-a-video", clip_job("protect: pmasks\n"),
         ((7, "jobs[0].protect", "'pmasks' is a folder; a video job's mask is a mask image or "
                                 "a mask video"),)),
]

MEDIA_CASES = [
    Case("content-text-named-jpg", job("  - {name: a, content: text.jpg, style: s.png}\n"),
         ((4, "jobs[0].content", "'text.jpg': not an image: cannot identify image file"),)),
    Case("content-zero-bytes", job("  - {name: a, content: zero.png, style: s.png}\n"),
         ((4, "jobs[0].content", "'zero.png': not an image: the file is empty (0 bytes)"),)),
    Case("style-text-named-jpg", job("  - {name: a, content: c.png, style: text.jpg}\n"),
         ((4, "jobs[0].style", "'text.jpg': not an image"),)),
    Case("video-text-named-mp4", job("  - {name: v, video: text.mp4, style: s.png}\n"),
         ((4, "jobs[0].video", "'text.mp4': not a video: ffmpeg cannot read it"),)),
    Case("video-zero-bytes", job("  - {name: v, video: zero.mp4, style: s.png}\n"),
         ((4, "jobs[0].video", "'zero.mp4': not a video: the file is empty (0 bytes)"),)),
    Case("video-header-only", job("  - {name: v, video: cut.mp4, style: s.png}\n"),
         ((4, "jobs[0].video", "'cut.mp4': no decodable video frames"),)),
    Case("video-cut-short", job("  - {name: v, video: cut300.mp4, style: s.png}\n"),
         ((4, "jobs[0].video", "'cut300.mp4': not a video"),)),
    Case("video-still-image", job("  - {name: v, video: still.mp4, style: s.png}\n"),
         ((4, "jobs[0].video", "'still.mp4': not a video: a still image"),)),
    Case("image-40000px-header", job("  - {name: a, content: bomb.png, style: s.png}\n"),
         ((4, "jobs[0].content", "'bomb.png': image is over Pillow's decompression-bomb limit"),)),
    Case("image-over-max-pixels", job("  - {name: a, content: c.png, style: big.png}\n"),
         ((4, "jobs[0].style", "'big.png': image is 9000\u00d79000 = 81.0 Mpx, over the limit "
                               "of 50.0 Mpx (setting max_pixels)"),)),
    Case("image-over-max-pixels-setting", with_settings("{max_pixels: 1000}"),
         ((5, "jobs[0].content", "'c.png': image is 48\u00d732 = 1,536 px, over the limit of "
                                 "1,000 px (setting max_pixels)"),
          (6, "jobs[0].style", "'s.png': image is 32\u00d732 = 1,024 px"))),
    Case("content-too-small-for-vgg19",
         with_settings("{size: 16, style_layers: [block5_pool]}", content="tiny.png"),
         ((5, "jobs[0].content", "'tiny.png' is 10\u00d710; at size 16 the result would be "
                                 "16\u00d716, too small for VGG19's block5_pool (needs \u2265 32 "
                                 "px a side)"),)),
    Case("content-too-thin-for-vgg19", job("  - {name: a, content: wide.png, style: s.png, "
                                           "settings: {size: 64}}\n"),
         ((4, "jobs[0].content", "'wide.png' is 256\u00d74; at size 64 the result would be "
                                 "64\u00d71, too small for VGG19's block5_conv1 (needs \u2265 16"),)),
    Case("style-too-thin-for-vgg19", job("  - {name: a, content: c.png, style: wide.png}\n"),
         ((4, "jobs[0].style", "'wide.png' is 256\u00d74; resized to 512 px on its longest side "
                               "it would be 512\u00d78, too small for VGG19's block5_conv1"),)),
    Case("video-frames-too-small", job("  - {name: v, video: thin.mp4, style: s.png, "
                                       "settings: {size: 32}}\n"),
         ((4, "jobs[0].video", "the frames of 'thin.mp4' are 64\u00d78; at size 32 the result "
                               "would be 32\u00d74, too small"),)),
    Case("video-frames-over-max-pixels", clip_job("settings: {max_pixels: 500}\n", "thin.mp4"),
         ((5, "jobs[0].video", "the frames of 'thin.mp4' are 64\u00d78 = 512 px, over the limit "
                               "of 500 px (setting max_pixels)"),
          (6, "jobs[0].style", "'s.png': image is 32\u00d732 = 1,024 px, over the limit of 500 px"))),
    Case("result-over-max-pixels", with_settings("{size: 4096, max_pixels: 2000000}"),
         ((5, "jobs[0].content", "'c.png' is 48\u00d732; at size 4096 the result would be "
                                 "4096\u00d72731 = 11.2 Mpx, over the limit of 2.0 Mpx"),
          (6, "jobs[0].style", "'s.png' is 32\u00d732; at size 4096 \u00d7 style_scale 1 it "
                               "would be 4096\u00d74096 = 16.8 Mpx, over the limit of 2.0 Mpx"))),
    Case("mask-aspect-differs", job("  - {name: a, content: c.png, style: [{image: s.png, "
                                    "mask: m.png}, {image: s.png, mask: sq.png}]}\n"),
         ((4, "jobs[0].style[1].mask", "'sq.png' is 32\u00d732 and 'c.png' is 48\u00d732: a mask "
                                       "must have its picture's aspect ratio (within 1%"),)),
    Case("mask-aspect-in-a-folder", job("  - {name: a, content: photos, style: s.png, "
                                        "protect: qmasks}\n"),
         ((4, "jobs[0].protect", "'qmasks/p.png' is 32\u00d732 and 'photos/p.png' is "
                                 "48\u00d732"),)),
    Case("mask-not-an-image", job("  - {name: a, content: c.png, style: {image: s.png, "
                                  "mask: text.jpg}}\n"),
         ((4, "jobs[0].style.mask", "'text.jpg': not an image: cannot identify image file"),)),
    Case("image-mask-aspect", job("  - {name: a, content: c.png, style: {image: s.png, "
                                  "image_mask: m.png}}\n"),
         ((4, "jobs[0].style.image_mask", "'m.png' is 48\u00d732 and 's.png' is 32\u00d732"),)),
    Case("mask-video-frame-count", clip_job("protect: short.mp4\n"),
         ((7, "jobs[0].protect", "'short.mp4' has 5 frames, 'clip.mp4' 10: a mask video needs "
                                 "one frame for each of the video's"),)),
    Case("mask-video-aspect", clip_job("protect: thin.mp4\n"),
         ((7, "jobs[0].protect", "'thin.mp4' is 64\u00d78 and the frames of 'clip.mp4' are "
                                 "32\u00d724"),)),
    Case("static-mask-of-a-video-aspect", clip_job("protect: m.png\n"),
         ((7, "jobs[0].protect", "'m.png' is 48\u00d732 and the frames of 'clip.mp4' are "
                                 "32\u00d724"),)),
    Case("mask-of-the-stored-pixels-of-a-turned-photo",
         job("  - {name: a, content: turned.jpg, style: s.png, protect: m.png}\n"),
         ((4, "jobs[0].protect", "'m.png' is 48\u00d732 and 'turned.jpg' is 32\u00d748"),)),
    Case("mask-folder-of-the-stored-pixels", job("  - {name: a, content: turned.jpg, "
                                                 "style: s.png, protect: tmasks}\n"),
         ((4, "jobs[0].protect", "'tmasks/turned.png' is 48\u00d732 and 'turned.jpg' is "
                                 "32\u00d748"),)),
    Case("mask-all-black", job("  - {name: a, content: c.png, style: {image: s.png, "
                               "mask: black.png}}\n"),
         ((4, "jobs[0].style.mask", "'black.png' is black everywhere: its style would go "
                                    "nowhere"),)),
    Case("image-mask-all-black", job("  - {name: a, content: c.png, style: {image: s.png, "
                                     "image_mask: blacksq.png}}\n"),
         ((4, "jobs[0].style.image_mask", "'blacksq.png' is black everywhere: its style would "
                                          "be taken from nothing"),)),
    Case("style-over-max-pixels", with_settings("{size: 2048, style_scale: 8}"),
         ((6, "jobs[0].style", "'s.png' is 32\u00d732; at size 2048 \u00d7 style_scale 8 it "
                               "would be 16384\u00d716384 = 268.4 Mpx, over the limit"),)),
]

# Images whose header is fine and whose data is not: `run` fails their units and goes on with
# the others (exit 1); manifest.load(verify_pixels=True), meant for `validate`, refuses them.
DECODE_CASES = [
    Case("content-truncated-jpeg", job("  - {name: a, content: trunc.jpg, style: s.png}\n"),
         ((4, "jobs[0].content", "'trunc.jpg': truncated or corrupt image: image file is "
                                 "truncated"),)),
    Case("content-truncated-png", job("  - {name: a, content: trunc.png, style: s.png}\n"),
         ((4, "jobs[0].content", "'trunc.png': truncated or corrupt image"),)),
    Case("folder-with-a-truncated-image", job("  - {name: a, content: mixed, style: s.png}\n"),
         ((4, "jobs[0].content", "'mixed/bad.jpg': truncated or corrupt image"),)),
    Case("style-truncated", job("  - {name: a, content: c.png, style: trunc.png}\n"),
         ((4, "jobs[0].style", "'trunc.png': truncated or corrupt image"),)),
    Case("init-truncated", with_settings("{init: trunc.jpg}"),
         ((7, "jobs[0].settings.init", "'trunc.jpg': truncated or corrupt image"),)),
]
# The same inputs in one run: (job, its content, the file its unit fails on)
DECODE_RUN = [("t1", "trunc.jpg", "trunc.jpg"), ("t2", "trunc.png", "trunc.png"),
              ("t3", "mixed", "mixed/bad.jpg"), ("t4", "c.png", "trunc.png"),
              ("t5", "c.png", "trunc.jpg")]

NAME_RULE = "cannot name a folder: use letters, digits"
HOSTILE_CASES = [
    # -- YAML that builds objects, or blows up
    Case("tag-apply-os-system", job("  - {name: !!python/object/apply:os.system "
                                    "['touch @MARKER'], content: c.png, style: s.png}\n"),
         ((4, "jobs[0].name", "YAML tag '!!python/object/apply:os.system' is not allowed"),)),
    Case("tag-whole-document", "!!python/object/apply:os.system ['touch @MARKER']\n",
         ((1, None, "got a list tagged '!!python/object/apply:os.system'"),)),
    Case("tag-python-name", job("  - {name: a, content: c.png, style: !!python/name:os.system }\n"),
         ((4, "jobs[0].style", "YAML tag '!!python/name:os.system' is not allowed"),)),
    Case("tag-object-new", job(PAIR, defaults="!!python/object/new:subprocess.Popen "
                                              "[[touch, '@MARKER']]"),
         ((3, "defaults", "tagged '!!python/object/new:subprocess.Popen'"),)),
    Case("tag-on-a-key", job(PAIR) + "? !!python/object/apply:os.system ['touch @MARKER']\n: 1\n",
         ((5, None, "YAML tag '!!python/object/apply:os.system' is not allowed"),)),
    Case("tag-in-a-setting", with_settings("{size: !!python/object/apply:os.system "
                                           "['touch @MARKER']}"),
         ((7, "jobs[0].settings.size", "YAML tag '!!python/object/apply:os.system'"),)),
    Case("tag-custom", with_settings("{size: !big 512}"),
         ((7, "jobs[0].settings.size", "YAML tag '!big' is not allowed"),)),
    Case("billion-laughs", "version: 1\noutput: @OUT\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else ', '.join(['lol'] * 9)}]\n"
        for i in range(10)) + "jobs: *l9\n",
        ((9, None, "invalid YAML: its aliases expand to more than 1,000,000 values"),)),
    Case("recursive-alias", "version: 1\noutput: @OUT\njobs: &a [*a]\n",
         ((3, None, "invalid YAML: an alias refers to a value that contains it"),)),
    Case("nested-too-deep", "version: 1\noutput: @OUT\njobs: " + "[" * 1000 + "]" * 1000 + "\n",
         ((None, None, "invalid YAML: nested too deeply"),)),
    Case("manifest-too-large", "# padding\n" * (1_100_000),
         ((None, None, "larger than 10 MB; expected a YAML manifest"),)),
    Case("manifest-is-dev-zero", None, ((None, None, "is not a regular file; expected a YAML "
                                                 "manifest"),), path="/dev/zero"),
    # -- job names that are paths
    Case("name-parent", job("  - {name: ../evil, content: c.png, style: s.png}\n"),
         ((4, "jobs[0].name", f"'../evil' {NAME_RULE}"),)),
    Case("name-absolute", job("  - {name: /abs, content: c.png, style: s.png}\n"),
         ((4, "jobs[0].name", f"'/abs' {NAME_RULE}"),)),
    Case("name-with-slash", job("  - {name: a/b, content: c.png, style: s.png}\n"),
         ((4, "jobs[0].name", f"'a/b' {NAME_RULE}"),)),
    Case("name-dot-dot", job("  - {name: '..', content: c.png, style: s.png}\n"),
         ((4, "jobs[0].name", f"'..' {NAME_RULE}"),)),
    Case("name-state-folder", job("  - {name: .batch_style, content: c.png, style: s.png}\n"),
         ((4, "jobs[0].name", f"'.batch_style' {NAME_RULE}"),)),
    Case("name-nul", job('  - {name: "a\\0b", content: c.png, style: s.png}\n'),
         ((4, "jobs[0].name", f"'a\\x00b' {NAME_RULE}"),)),
    Case("name-newline", job('  - {name: "a\\nb", content: c.png, style: s.png}\n'),
         ((4, "jobs[0].name", f"'a\\nb' {NAME_RULE}"),)),
    Case("name-home", job("  - {name: '~root', content: c.png, style: s.png}\n"),
         ((4, "jobs[0].name", f"'~root' {NAME_RULE}"),)),
    Case("name-too-long", job(f"  - {{name: {'n' * 300}, content: c.png, style: s.png}}\n"),
         ((4, "jobs[0].name", "expected at most 100 characters, got 300"),)),
    Case("name-differs-in-case", job(PAIR + "  - {name: A, content: c.png, style: s.png}\n"),
         ((5, "jobs[1].name", "duplicate job name 'A' (as 'a': they differ only in case"),)),
    # -- derived output paths that lead out through symbolic links
    Case("job-folder-symlink-out", job(PAIR),
         ((4, "jobs[0].name", "'out/job-folder-symlink-out/a' is a symbolic link to '@ELSEWHERE', "
                              "outside the output folder"),),
         setup=lambda folder, out: (out.mkdir(parents=True),
                                    (out / "a").symlink_to(folder / "elsewhere"))),
    Case("job-folder-dangling-symlink", job(PAIR),
         ((4, "jobs[0].name", "is a symbolic link to '/nonexistent/batch-style-target'"),),
         setup=lambda folder, out: (out.mkdir(parents=True),
                                    (out / "a").symlink_to("/nonexistent/batch-style-target"))),
    Case("state-folder-symlink-out", job(PAIR),
         ((2, "output", "'out/state-folder-symlink-out/.batch_style' is a symbolic link to "
                        "'@ELSEWHERE'"),),
         setup=lambda folder, out: (out.mkdir(parents=True),
                                    (out / ".batch_style").symlink_to(folder / "elsewhere"))),
    Case("run-log-symlink-out", job(PAIR),
         ((2, "output", "'out/run-log-symlink-out/run.log' is a symbolic link to "
                        "'@ELSEWHERE/log.txt'"),),
         setup=lambda folder, out: (out.mkdir(parents=True),
                                    (out / "run.log").symlink_to(folder / "elsewhere/log.txt"))),
    Case("job-folder-is-a-file", job(PAIR),
         ((4, "jobs[0].name", "'out/job-folder-is-a-file/a' exists and is not a folder"),),
         setup=lambda folder, out: (out.mkdir(parents=True), (out / "a").write_text("x"))),
    Case("video-frames-symlink-out", clip_job("outputs: [frames]\n"),
         ((4, "jobs[0].name", "'out/video-frames-symlink-out/v/frames' is a symbolic link"),),
         setup=lambda folder, out: ((out / "v").mkdir(parents=True),
                                    (out / "v/frames").symlink_to(folder / "elsewhere"))),
    Case("video-work-symlink-out", clip_job("outputs: [mp4]\n"),
         ((4, "jobs[0].name", "'out/video-work-symlink-out/.batch_style/work/v/clip/in-0' is a "
                              "symbolic link"),),
         setup=lambda folder, out: ((out / ".batch_style/work/v/clip").mkdir(parents=True),
                                    (out / ".batch_style/work/v/clip/in-0").symlink_to(
                                        folder / "elsewhere"))),
    # -- ffmpeg: local files only
    Case("video-http", job("  - {name: v, video: 'http://example.com/x.mp4', style: s.png}\n"),
         ((4, "jobs[0].video", "'http://example.com/x.mp4' is a URL or a protocol, not a local "
                               "file"),)),
    Case("video-https", job("  - {name: v, video: 'https://example.com/x.mp4', style: s.png}\n"),
         ((4, "jobs[0].video", "is a URL or a protocol"),)),
    Case("video-concat-protocol", job("  - {name: v, video: 'concat:clip.mp4|clip.mp4', "
                                      "style: s.png}\n"),
         ((4, "jobs[0].video", "'concat:clip.mp4|clip.mp4' is a URL or a protocol"),)),
    Case("video-file-protocol", job("  - {name: v, video: 'file:clip.mp4', style: s.png}\n"),
         ((4, "jobs[0].video", "'file:clip.mp4' is a URL or a protocol"),)),
    Case("video-data-url", job("  - {name: v, video: 'data:video/mp4;base64,AAAA', "
                               "style: s.png}\n"),
         ((4, "jobs[0].video", "is a URL or a protocol"),)),
    Case("video-m3u8-playlist", job("  - {name: v, video: list.m3u8, style: s.png}\n"),
         ((4, "jobs[0].video", "'list.m3u8': only local video files are read, not URLs or "
                               "playlists"),)),
    Case("video-hls-named-mp4", job("  - {name: v, video: hls.mp4, style: s.png}\n"),
         ((4, "jobs[0].video", "'hls.mp4': not a video: a playlist or script that names other "
                               "files"),)),
    Case("video-ffconcat-named-mp4", job("  - {name: v, video: concat.mp4, style: s.png}\n"),
         ((4, "jobs[0].video", "'concat.mp4': not a video: a playlist or script"),)),
    Case("content-dev-zero", job("  - {name: a, content: /dev/zero, style: s.png}\n"),
         ((4, "jobs[0].content", "'/dev/zero' is not a regular file"),)),
    Case("video-dev-zero", job("  - {name: v, video: /dev/zero, style: s.png}\n"),
         ((4, "jobs[0].video", "'/dev/zero' is not a regular file"),)),
    Case("content-url", job("  - {name: a, content: 'http://example.com/a.jpg', "
                            "style: s.png}\n"),
         ((4, "jobs[0].content", "is a URL or a protocol, not a local file or folder"),)),
    Case("style-url", job("  - {name: a, content: c.png, style: 'https://example.com/s.jpg'}\n"),
         ((4, "jobs[0].style", "is a URL or a protocol, not a local file"),)),
    Case("mask-url", job("  - {name: a, content: c.png, style: {image: s.png, "
                         "mask: 'https://example.com/m.png'}}\n"),
         ((4, "jobs[0].style.mask", "is a URL or a protocol, not a local file or folder"),)),
    Case("mask-video-playlist", clip_job("protect: hls.mp4\n"),
         ((7, "jobs[0].protect", "'hls.mp4': not a video: a playlist or script"),)),
    Case("protect-dev-zero", job("  - {name: a, content: c.png, style: s.png, "
                                 "protect: /dev/zero}\n"),
         ((4, "jobs[0].protect", "'/dev/zero' is not a regular file"),)),
    Case("mask-is-a-result", job(PAIR + "  - {name: b, content: c.png, style: s.png, "
                                        "protect: @OUT/a/c.png}\n"),
         ((5, "jobs[1].protect", "is inside 'out/mask-is-a-result/a', where job 'a' writes its "
                                 "results"),),
         setup=lambda folder, out: ((out / "a").mkdir(parents=True),
                                    noise(48, 32).save(out / "a/c.png"))),
    Case("mask-folder-entry-links-to-its-result", job("  - {name: a, content: photos, "
                                                      "style: s.png, protect: lmasks}\n"),
         ((4, "jobs[0].protect", "'lmasks/p.png' is inside "
                                 "'out/mask-folder-entry-links-to-its-result/a', where job 'a' "
                                 "writes its results"),),
         setup=lambda folder, out: _mask_folder_linking_to(folder / "lmasks", out / "a/p.png")),
]


def _mask_folder_linking_to(masks: Path, result: Path) -> None:
    """A mask folder whose entry for photos/p.png is a link to the job's own result of it."""
    result.parent.mkdir(parents=True)
    noise(48, 32).save(result)
    masks.mkdir()
    noise(48, 32).save(masks / "q.png")
    (masks / "p.png").symlink_to(result)


@dataclass(frozen=True)
class WeightsCase:
    """A file given to `batch-style weights --weights FILE`, and what its one line must say."""

    id: str
    make: Callable[[Path], bytes | None]  # the file's bytes (None: no file), given the marker
    expect: str


TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
SYS_INFO = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}


class Evil:
    """Runs a command if anything ever unpickles it with the default find_class."""

    def __init__(self, marker: Path, how: str):
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "subprocess":
            return subprocess.call, (["touch", str(self.marker)],)
        return os.system, (f"touch {self.marker}",)


def torch_file(main: object, *, protocol: int = 2) -> bytes:
    """torch's legacy layout: magic, protocol, sys info (pickle protocol 2, as torch writes
    them), the main record (`protocol`), the storage keys."""
    head = b"".join(pickle.dumps(part, protocol=2) for part in (TORCH_MAGIC, 1001, SYS_INFO))
    return head + pickle.dumps(main, protocol=protocol) + pickle.dumps([], protocol=2)


def object_npz() -> bytes:
    """Every array our .npz holds, the first one a pickled object array."""
    arrays = {f"{layer}/{part}": np.zeros(1, np.float32)
              for layer in VGG19_SHAPES for part in ("kernel", "bias")}
    arrays["block1_conv1/kernel"] = np.array([{"a": 1}], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


WEIGHTS_CASES = [
    WeightsCase("pickle-os-system", lambda marker: torch_file({"w": Evil(marker, "os")}),
                "refusing to load: unexpected pickle global 'posix.system'"),
    WeightsCase("pickle-subprocess", lambda marker: torch_file({"w": Evil(marker, "subprocess")},
                                                               protocol=4),
                "refusing to load: unexpected pickle global 'subprocess.call'"),
    WeightsCase("pickle-evil-first", lambda marker: pickle.dumps(Evil(marker, "os"), protocol=2),
                "unknown weights format"),
    WeightsCase("pickle-in-sys-info", lambda marker: b"".join(
        pickle.dumps(part, protocol=2)
        for part in (TORCH_MAGIC, 1001, {**SYS_INFO, "x": Evil(marker, "os")}, {}, [])),
                "refusing to load: unexpected pickle global 'posix.system'"),
    WeightsCase("npz-with-pickled-objects", lambda marker: object_npz(),
                "unreadable .npz weights"),
    WeightsCase("text-file", lambda marker: b"these are not weights\n", "unknown weights format"),
    WeightsCase("truncated-torch", lambda marker: torch_file({})[:12], "refusing to load"),
    WeightsCase("missing-file", lambda marker: None, "no such weights file"),
]

def _link(out: Path, inside: str, target: Path) -> None:
    (out / inside).parent.mkdir(parents=True, exist_ok=True)
    (out / inside).symlink_to(target)


def _fifo(out: Path, inside: str) -> None:
    (out / inside).parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(out / inside)


LONG_NAME = "l" * 246 + ".png"  # 250 bytes: fits, but its progress GIF's name would not
# Round 2: what a careless or hostile manifest did to files that are not the run's own.
CARELESS_CASES = [
    # -- the run's own paths, at any depth, never lead out of the output folder
    Case("workers-symlink-out", job(PAIR),
         ((2, "output", "'out/workers-symlink-out/.batch_style/workers' is a symbolic link to "
                        "'@ELSEWHERE', outside the output folder"),),
         setup=lambda folder, out: _link(out, ".batch_style/workers", folder / "elsewhere")),
    Case("events-symlink-out", job(PAIR),
         ((2, "output", "'out/events-symlink-out/.batch_style/events.jsonl' is a symbolic link "
                        "to '@ELSEWHERE/log.txt'"),),
         setup=lambda folder, out: _link(out, ".batch_style/events.jsonl",
                                         folder / "elsewhere/log.txt")),
    Case("flow-folder-symlink-deep", clip_job("outputs: [mp4]\n"),
         ((4, "jobs[0].name", "'out/flow-folder-symlink-deep/.batch_style/work/v/clip/in-0/"
                              "flow-1-32x24' is a symbolic link to '@ELSEWHERE'"),),
         setup=lambda folder, out: _link(out, ".batch_style/work/v/clip/in-0/flow-1-32x24",
                                         folder / "elsewhere")),
    Case("result-symlink-out", job(PAIR),
         ((4, "jobs[0].name", "'out/result-symlink-out/a/c.png' is a symbolic link to "
                              "'@ELSEWHERE/log.txt'"),),
         setup=lambda folder, out: _link(out, "a/c.png", folder / "elsewhere/log.txt")),
    Case("run-log-fifo", job(PAIR),
         ((2, "output", "'out/run-log-fifo/run.log' is not a regular file"),),
         setup=lambda folder, out: _fifo(out, "run.log")),
    Case("events-fifo", job(PAIR),
         ((2, "output", "'out/events-fifo/.batch_style/events.jsonl' is not a regular file"),),
         setup=lambda folder, out: _fifo(out, ".batch_style/events.jsonl")),
    # -- results never overwrite, nor become, inputs
    Case("output-over-input", "version: 1\noutput: .\njobs:\n"
                              "  - {name: photos, content: photos, style: s.png}\n",
         ((4, "jobs[0].content", "'photos' is inside 'photos', where job 'photos' writes its "
                                 "results: results would overwrite their own inputs"),)),
    Case("output-under-a-file", job(PAIR).replace("@OUT", "c.png/out"),
         ((2, "output", "'c.png/out': 'c.png' is not a folder"),)),
    Case("style-is-a-result", job(PAIR + "  - {name: b, content: c.png, style: @OUT/a/c.png}\n"),
         ((5, "jobs[1].name", "'out/style-is-a-result/a/c.png', an input of this job, would be "
                              "overwritten by a result of job 'a'"),),
         setup=lambda folder, out: ((out / "a").mkdir(parents=True),
                                    noise(8, 8).save(out / "a/c.png"))),
    # -- numbers that validated and broke later
    Case("fps-tiny", clip_job("fps: 0.002\n"),
         ((7, "jobs[0].fps", "expected at least 1 frame per second, got 0.002"),)),
    Case("weights-overflow", with_settings("{style_layer_weights: [1.0e308, 1.0e308, 1, 1, 1]}"),
         ((7, "jobs[0].settings.style_layer_weights",
           "expected numbers between 0 and 1e+12, got 1e+308"),)),
    Case("steps-zero", with_settings("{steps: 0}"),
         ((7, "jobs[0].settings.steps", "between 1 and 100000, got 0"),)),
    Case("weights-all-zero", with_settings("{content_weight: 0, style_weight: 0}"),
         ((7, "jobs[0].settings.style_weight", "content_weight and style_weight are both 0"),)),
    Case("start-inside-last-frame", clip_job("start: 0.95\n"),
         ((7, "jobs[0].start", "no frames between 0.95 s and the end"),)),
    Case("window-without-frames", clip_job("start: 0.91\nend: 0.95\n"),
         ((7, "jobs[0].start", "no frames between 0.91 s and 0.95 s"),)),
    # -- names
    Case("path-part-too-long", job(f"  - {{name: a, content: {'x' * 300}.png, style: s.png}}\n"),
         ((4, "jobs[0].content", "has a part of 304 bytes; a file or folder name holds at most "
                                 "255"),)),
    Case("path-nul", job('  - {name: a, content: "c\\0.png", style: s.png}\n'),
         ((4, "jobs[0].content", "contains a NUL character"),)),
    Case("result-name-too-long", job(f"  - {{name: a, content: {LONG_NAME}, style: s.png, "
                                     f"outputs: [image, progress_gif]}}\n"),
         ((4, "jobs[0].content", "its result would be named"),),
         setup=lambda folder, out: noise(48, 32).save(folder / LONG_NAME)),
    Case("name-run-log", job("  - {name: run.log, content: c.png, style: s.png}\n"),
         ((4, "jobs[0].name", "'run.log' is the name of one of the run's own files"),)),
    Case("name-report-html", job("  - {name: Report.HTML, content: c.png, style: s.png}\n"),
         ((4, "jobs[0].name", "'Report.HTML' is the name of one of the run's own files"),)),
]

ALL_CASES = MANIFEST_CASES + MEDIA_CASES + HOSTILE_CASES + CARELESS_CASES  # through `validate`

# Option values the command line cannot take: (words after `batch-style`, the one line it says).
STYLIZE = ("stylize", "c.png", "s.png")
OPTION_CASES = {
    "size-fraction": ((*STYLIZE, "--size", "64.5"), "--size: expected a whole number, got '64.5'"),
    "save-every-zero": ((*STYLIZE, "--save-every", "0"), "--save-every: expected 1 or more, got 0"),
    "bit-depth-12": ((*STYLIZE, "--bit-depth", "12"), "--bit-depth: expected 8 or 16, got '12'"),
    "colors-histo": ((*STYLIZE, "--preserve-colors", "histo"), "--preserve-colors: expected "
                     "true, false, luminance or histogram, got 'histo' (did you mean histogram?)"),
    "workers-negative": (("run", "m.yaml", "--workers", "-1"),
                         "--workers: expected 0 or more, got -1"),
    # the same bounds as a manifest's `steps` (MANIFEST_CASES: steps-zero)
    "steps-zero": ((*STYLIZE, "--steps", "0"), "--steps: expected a value between 1 and 100000, "
                   "got 0"),
    "run-steps-zero": (("run", "m.yaml", "--steps", "0"),
                       "--steps: expected a value between 1 and 100000, got 0"),
    "yes-no-maybe": ((*STYLIZE, "--warm-start=maybe"), "--warm-start: expected true or false "
                     "(or --warm-start alone, --no-warm-start), got 'maybe'"),
    "optimizer-typo": ((*STYLIZE, "--optimizer", "adma"),
                       "--optimizer: expected lbfgs or adam, got 'adma' (did you mean adam?)"),
    "device-typo": (("run", "m.yaml", "--device", "gpus"),
                    "--device: expected auto, cpu or gpu, got 'gpus' (did you mean gpu?)"),
    "weight-not-a-number": ((*STYLIZE, "--style_weight", "lots"),
                            "--style-weight: expected a number, got 'lots'"),
    "ambiguous-abbreviation": (("run", "m.yaml", "--pre", "draft"), "ambiguous option: --pre "
                               "could match --preserve-colors, --precision, --preset"),
}


# ---------------------------------------------------------------------------------------------
# Building the corpus


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height and holds no pixels: decoding it would fail."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def clip(width: int, height: int, frames: int = 10) -> list[np.ndarray]:
    return [np.full((height, width, 3), i / frames, np.float32) for i in range(frames)]


def build_media(folder: Path) -> None:
    noise(48, 32).save(folder / "c.png")
    noise(32, 32, 1).save(folder / "s.png")
    noise(10, 10, 2).save(folder / "tiny.png")
    noise(256, 4, 3).save(folder / "wide.png")
    jpeg, png = encoded(noise(64, 48, 4), "JPEG"), encoded(noise(64, 48, 5), "PNG")
    (folder / "trunc.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    (folder / "trunc.png").write_bytes(png[:len(png) // 2])
    (folder / "text.jpg").write_text("hello, I am not an image\n")
    (folder / "zero.png").write_bytes(b"")
    (folder / "bomb.png").write_bytes(png_header_only(40000, 40000))
    (folder / "big.png").write_bytes(png_header_only(9000, 9000))
    (folder / "empty").mkdir()
    (folder / "notimg").mkdir()
    (folder / "notimg/readme.txt").write_text("no images here\n")
    (folder / "mixed").mkdir()
    noise(48, 32, 6).save(folder / "mixed/good.png")
    (folder / "mixed/bad.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    encode.write_mp4(clip(32, 24), folder / "clip.mp4", fps=10)  # 1 s, moov first (faststart)
    encode.write_mp4(clip(64, 8), folder / "thin.mp4", fps=10)
    mp4 = (folder / "clip.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(mp4[:mp4.index(b"mdat") + 4])  # headers, no frame data
    (folder / "cut300.mp4").write_bytes(mp4[:300])
    (folder / "text.mp4").write_text("hello, I am not a video\n")
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "still.mp4").write_bytes(png)
    playlist = ("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nclip.mp4\n"
                "#EXTINF:1,\nhttp://127.0.0.1:9/remote.ts\n#EXT-X-ENDLIST\n")
    (folder / "list.m3u8").write_text(playlist)
    (folder / "hls.mp4").write_text(playlist)
    (folder / "concat.mp4").write_text("ffconcat version 1.0\nfile clip.mp4\nfile thin.mp4\n")
    (folder / "elsewhere").mkdir()
    (folder / "elsewhere/log.txt").write_text("someone else's file\n")
    (folder / "photos").mkdir()
    noise(48, 32, 7).save(folder / "photos/p.png")
    noise(48, 32, 8).save(folder / "m.png")
    noise(32, 32, 9).save(folder / "sq.png")
    (folder / "pmasks").mkdir()
    noise(48, 32, 10).save(folder / "pmasks/q.png")
    (folder / "qmasks").mkdir()
    noise(32, 32, 11).save(folder / "qmasks/p.png")
    encode.write_mp4(clip(32, 24, 5), folder / "short.mp4", fps=10)
    Image.new("L", (48, 32)).save(folder / "black.png")
    Image.new("L", (32, 32)).save(folder / "blacksq.png")
    (folder / "turned.jpg").write_bytes(turned_jpeg(48, 32))  # upright: 32×48
    (folder / "tmasks").mkdir()
    noise(48, 32, 12).save(folder / "tmasks/turned.png")


def turned_jpeg(width: int, height: int) -> bytes:
    """A JPEG stored width×height whose EXIF says to turn it a quarter (upright: height×width)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
    return encoded_with_exif(noise(width, height, 13), exif)


def substitute(text: str | bytes, folder: Path, case: Case) -> str | bytes:
    swaps = {"@OUT": f"out/{case.id}", "@MARKER": str(folder / MARKER),
             "@ELSEWHERE": os.path.realpath(folder / "elsewhere")}
    for key, value in swaps.items():
        text = (text.replace(key.encode(), value.encode()) if isinstance(text, bytes)
                else text.replace(key, value))
    return text


def manifest_name(case: Case) -> str:
    return case.path or f"{case.id}.yaml"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The media and every case's manifest, in one folder."""
    folder = tmp_path_factory.mktemp("corpus")
    build_media(folder)
    for case in ALL_CASES + DECODE_CASES:
        if case.setup:
            case.setup(folder, folder / "out" / case.id)
        if case.text is not None:
            text = substitute(case.text, folder, case)
            path = folder / manifest_name(case)
            path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return folder


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under `folder` (symbolic links not followed) with its kind, size and time."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            stat = path.lstat()
            found[str(path.relative_to(folder))] = (stat.st_mode, stat.st_size, stat.st_mtime_ns)
    return found


def problem_pattern(shown: str, line: int | None, field: str | None, fragment: str) -> str:
    where = re.escape(shown) + (f":{line}" if line is not None else "")
    return f"{where}: " + (re.escape(field) + ": " if field else "") + ".*" + re.escape(fragment) + ".*"


def expected_lines(case: Case, folder: Path, shown: str) -> list[str]:
    return [problem_pattern(shown, line, field, substitute(fragment, folder, case))
            for line, field, fragment in case.expect]


def assert_problems(stderr: str, case: Case, folder: Path, shown: str) -> None:
    """The lines for one manifest are exactly the expected ones, each one line, in order."""
    lines = [line for line in stderr.splitlines()
             if line.startswith(shown + ":") or line == shown]
    patterns = expected_lines(case, folder, shown)
    assert len(lines) == len(patterns), f"{case.id}: expected {len(patterns)} lines, got\n" + \
        "\n".join(lines)
    for line, pattern in zip(lines, patterns):
        assert re.fullmatch(pattern, line), f"{case.id}: {line!r} does not match {pattern!r}"


# ---------------------------------------------------------------------------------------------
# The corpus through the command line


@pytest.mark.parametrize("case", ALL_CASES,
                         ids=[f"{kind}-{c.id}" for kind, cases in
                              (("manifest", MANIFEST_CASES), ("media", MEDIA_CASES),
                               ("hostile", HOSTILE_CASES), ("careless", CARELESS_CASES))
                              for c in cases])
def test_validate_reports_one_line_per_problem(corpus, case, capsys, monkeypatch):
    monkeypatch.chdir(corpus)
    before = snapshot(corpus)
    shown = manifest_name(case)
    code = cli.main(["validate", shown])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert len(err.splitlines()) == len(case.expect)
    assert_problems(err, case, corpus, shown)
    assert snapshot(corpus) == before  # nothing written, nothing replaced
    assert not (corpus / MARKER).exists()


@pytest.mark.parametrize("case", WEIGHTS_CASES, ids=[f"weights-{c.id}" for c in WEIGHTS_CASES])
def test_weights_command_refuses_bad_weight_files(tmp_path, case, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no cache of the real weights is consulted
    marker = tmp_path / MARKER
    path = tmp_path / "weights.bin"
    data = case.make(marker)
    if data is not None:
        path.write_bytes(data)
    before = snapshot(tmp_path)
    code = cli.main(["weights", "--weights", str(path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == "" and "Traceback" not in err
    assert re.fullmatch(problem_pattern(str(path), None, None, case.expect), err.strip()), err
    assert not marker.exists()
    assert snapshot(tmp_path) == before


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # This checkout's package, whichever one the interpreter has installed.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                          os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return subprocess.run([sys.executable, "-m", "batch_style", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_whole_corpus_through_one_real_validate(corpus):
    """One `python -m batch_style validate` with every manifest: exit 2, each file's lines."""
    before = snapshot(corpus)
    names = [manifest_name(c) for c in ALL_CASES]
    done = run_cli("validate", *names, cwd=corpus)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == sum(len(c.expect) for c in ALL_CASES)
    for case in ALL_CASES:
        assert_problems(done.stderr, case, corpus, manifest_name(case))
    assert snapshot(corpus) == before
    assert not (corpus / MARKER).exists()


@pytest.mark.parametrize("case_id", ["tag-apply-os-system", "job-folder-symlink-out",
                                     "video-hls-named-mp4", "content-text-named-jpg"])
def test_run_refuses_before_writing_anything(corpus, case_id):
    """`run` checks the manifest first: exit 2, the same lines, no output folder, no model."""
    case = next(c for c in ALL_CASES if c.id == case_id)
    before = snapshot(corpus)
    done = run_cli("run", "--tiny", "--workers", "0", manifest_name(case), cwd=corpus)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert_problems(done.stderr, case, corpus, manifest_name(case))
    assert snapshot(corpus) == before
    assert not (corpus / MARKER).exists()


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_a_bad_option_value_is_one_line(cli, case):
    """Through the real command: exit 2, one line naming the option, what was given and what
    it takes; no usage, no traceback."""
    words, line = OPTION_CASES[case]
    done = cli.run(*words)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [f"batch-style: error: {line}"]


def test_weights_hostile_pickle_through_the_real_command(tmp_path):
    marker = tmp_path / MARKER
    path = tmp_path / "evil.bin"
    path.write_bytes(torch_file({"w": Evil(marker, "os")}))
    done = run_cli("weights", "--weights", str(path), cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [f"{path}: refusing to load: unexpected pickle global "
                                        f"'posix.system'"]
    assert not marker.exists()


@pytest.mark.parametrize("case", DECODE_CASES, ids=[f"media-{c.id}" for c in DECODE_CASES])
def test_verify_pixels_finds_damaged_images(corpus, case, monkeypatch):
    """Header-only checks pass them (their units fail at run time); reading the data does not."""
    monkeypatch.chdir(corpus)
    shown = manifest_name(case)
    before = snapshot(corpus)
    manifest.load(shown)
    with pytest.raises(UserError) as caught:
        manifest.load(shown, verify_pixels=True)
    lines = [cli._problem_line(e) for e in getattr(caught.value, "errors", [caught.value])]
    assert_problems("\n".join(lines), case, corpus, shown)
    assert snapshot(corpus) == before


def test_damaged_images_fail_their_units_and_the_run_goes_on(corpus):
    """`run` through the real command: exit 1, every other unit done, one summary line per
    failed unit naming the damaged file, no traceback, nothing written outside OUTPUT."""
    jobs = "".join(f"  - {{name: {name}, content: {content}, style: "
                   f"{'trunc.png' if name == 't4' else 's.png'}"
                   f"{', settings: {init: trunc.jpg}' if name == 't5' else ''}}}\n"
                   for name, content, _ in DECODE_RUN)
    (corpus / "decode-run.yaml").write_text(
        "version: 1\noutput: out/decode-run\ndefaults: {size: 32, steps: 1}\njobs:\n"
        "  - {name: good, content: c.png, style: s.png}\n" + jobs)
    before = snapshot(corpus)
    done = run_cli("run", "--tiny", "--workers", "0", "decode-run.yaml", cwd=corpus)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    summary = [line for line in done.stderr.splitlines() if line.startswith("  failed: ")]
    assert len(summary) == len(DECODE_RUN), done.stderr
    for line, (name, _, bad) in zip(summary, DECODE_RUN):
        assert re.fullmatch(rf"  failed: {name}/\S+: {re.escape(str(corpus / bad))}: truncated or "
                            rf"corrupt image: .*", line), line
    results = corpus / "out/decode-run"
    assert (results / "good/c.png").is_file() and (results / "t3/good.png").is_file()
    after = snapshot(corpus)
    new = after.keys() - before.keys()
    assert all(path.startswith("out/decode-run") for path in new), new
    untouched = {path: entry for path, entry in before.items() if path != "out"}
    assert {path: after.get(path) for path in untouched} == untouched


# ---------------------------------------------------------------------------------------------
# What the corpus cannot show on its own


def test_an_output_folder_given_as_a_symlink_is_fine(corpus, tmp_path, capsys, monkeypatch):
    real = tmp_path / "real-results"
    real.mkdir()
    (corpus / "linked-out").symlink_to(real)
    try:
        (corpus / "linked-out.yaml").write_text(f"version: 1\noutput: linked-out\njobs:\n{PAIR}")
        monkeypatch.chdir(corpus)
        assert cli.main(["validate", "linked-out.yaml"]) == 0
        assert "linked-out.yaml: ok, 1 job " in capsys.readouterr().out
    finally:
        (corpus / "linked-out").unlink()
        (corpus / "linked-out.yaml").unlink()


def test_a_symlink_inside_the_output_folder_is_fine(corpus, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    (out / "shared").mkdir(parents=True)
    (out / "a").symlink_to(out / "shared")
    (tmp_path / "m.yaml").write_text(f"version: 1\noutput: out\njobs:\n{PAIR}")
    for name in ("c.png", "s.png"):
        (tmp_path / name).write_bytes((corpus / name).read_bytes())
    monkeypatch.chdir(tmp_path)
    assert cli.main(["validate", "m.yaml"]) == 0, capsys.readouterr().err


def test_every_ffmpeg_input_is_limited_to_local_files(corpus, tmp_path, monkeypatch):
    """Probing, counting, decoding, encoding and muxing audio: each `-i` has the whitelist."""
    commands: list[list[str]] = []
    real_popen = subprocess.Popen

    def recording_popen(cmd, *args, **kwargs):
        if "ffmpeg" in os.path.basename(str(cmd[0])):
            commands.append([str(part) for part in cmd])
        return real_popen(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    sample = Path(__file__).resolve().parent.parent / "samples/clips/realshort.mp4"
    info = video.probe_video(sample)  # has audio: the mux path runs too
    frames = [frame for _, _, frame in video.iter_frames(sample, 0.0, 0.2, info=info)]
    encode.write_mp4(frames, tmp_path / "out.mp4", info.fps, audio_from=sample,
                    audio_duration=0.2)
    kinds = {"probe": 0, "decode": 0, "write": 0}
    for cmd in (c for c in commands if "-i" in c):
        previous = 0  # each input's own options come after the previous input
        for i in (i for i, part in enumerate(cmd) if part == "-i"):
            options = cmd[previous:i]
            assert "-protocol_whitelist" in options, cmd
            allowed = options[options.index("-protocol_whitelist") + 1]
            assert allowed in ("file,pipe", "pipe"), cmd
            assert cmd[i + 1].startswith("/") or cmd[i + 1] == "pipe:0", cmd  # no protocols
            previous = i + 2
        kinds["probe" if "null" in cmd else "decode" if "image2pipe" in cmd else "write"] += 1
    # probe_video: header and frame count; write_mp4: the audio's probe, encoding, muxing
    assert kinds["probe"] >= 3 and kinds["decode"] >= 1 and kinds["write"] >= 2, kinds


def test_the_whitelist_keeps_ffmpeg_off_the_network(corpus, monkeypatch):
    """Even a playlist that got past our checks could not fetch its remote segment."""
    logs: list[str] = []
    real_run = subprocess.run

    def recording_run(*args, **kwargs):
        done = real_run(*args, **kwargs)
        logs.append(done.stderr)
        return done

    monkeypatch.setattr(subprocess, "run", recording_run)
    video.ffprobe_like(corpus / "list.m3u8")  # straight to ffmpeg, past probe_video's checks
    assert "Protocol 'http' not on whitelist 'file,pipe'" in "".join(logs)


def test_pillows_bomb_guard_stays_on():
    import batch_style.media.images  # noqa: F401
    import batch_style.pipeline.read.manifest  # noqa: F401  (nothing we import may turn it off)

    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS >= 50_000_000


def test_a_bug_is_one_line_without_debug_and_a_traceback_with_it(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something we did not foresee\nsecond line")

    monkeypatch.setattr(cli, "cmd_status", broken)
    assert cli.main(["status", "somewhere"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["batch-style: internal error: RuntimeError: something we did not "
                                "foresee\\nsecond line (run again with --debug for the traceback)"]
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "status", "somewhere"])


def test_a_newline_in_a_problem_cannot_make_a_second_line(monkeypatch, capsys):
    def refuse(args):
        raise UserError("no such file", file="evil\nx.yaml:1: jobs[0]: forged", line=3)

    monkeypatch.setattr(cli, "cmd_validate", refuse)
    assert cli.main(["validate", "x.yaml"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "evil\\nx.yaml:1: jobs[0]: forged:3: no such file"]


def test_usage_errors_exit_2_without_a_traceback(corpus):
    done = run_cli("run", "--workers", "many", "x.yaml", cwd=corpus)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--workers: expected a whole number, got 'many'" in done.stderr


def test_several_bad_options_are_still_a_usage_error():
    from batch_style.errors import UserErrors

    both = UserErrors([UserError("expected a value between 16 and 8192, got 5", field="--size"),
                       UserError("expected a value between 0 and 100000, got -1",
                                 field="--steps")])
    assert cli._is_usage(both)
    assert not cli._is_usage(UserErrors([both.errors[0], UserError("no such file", file="a")]))


# ---------------------------------------------------------------------------------------------
# Round 2: what a run does with careless surroundings (through the real command)


def small_manifest(folder: Path, jobs: str, output: str = "out") -> Path:
    path = folder / "m.yaml"
    path.write_text(f"version: 1\noutput: {output}\ndefaults: {{size: 32, steps: 1}}\n"
                    f"jobs:\n{jobs}")
    return path


def test_a_link_out_of_the_state_folder_is_refused_and_nothing_outside_changes(tmp_path):
    """A `workers` link used to make the heartbeat cleaner empty its target of *.json."""
    noise(48, 32).save(tmp_path / "c.png")
    noise(32, 32, 1).save(tmp_path / "s.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.json").write_text("{}")
    (tmp_path / "out/.batch_style").mkdir(parents=True)
    (tmp_path / "out/.batch_style/workers").symlink_to(elsewhere)
    small_manifest(tmp_path, PAIR)
    before = snapshot(elsewhere)
    done = run_cli("run", "--tiny", "--workers", "0", "m.yaml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "'out/.batch_style/workers' is a symbolic link" in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(elsewhere) == before


def test_beats_are_cleared_only_where_they_are_ours(tmp_path):
    """Only PID.json files go, and never through a link to another folder."""
    from batch_style.pipeline.state import events

    state = tmp_path / "out/.batch_style"
    (state / "workers").mkdir(parents=True)
    for name in ("123.json", "notes.json", ".x.json"):
        (state / "workers" / name).write_text("{}")
    events._clear_beats(tmp_path / "out")
    assert sorted(p.name for p in (state / "workers").iterdir()) == [".x.json", "notes.json"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "456.json").write_text("{}")
    (state / "workers").rename(state / "old")
    (state / "workers").symlink_to(elsewhere)
    events._clear_beats(tmp_path / "out")
    assert (elsewhere / "456.json").exists()


def test_user_files_that_look_like_temporaries_survive_a_run(tmp_path):
    noise(48, 32).save(tmp_path / "c.png")
    noise(32, 32, 1).save(tmp_path / "s.png")
    mine = [tmp_path / "out/a/.x.tmp-old", tmp_path / "out/a/.c.png.tmp-1-deadbeef.png",
            tmp_path / "out/notes/.draft.tmp-2", tmp_path / "out/.report.tmp-3"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("a user's file")
    small_manifest(tmp_path, PAIR)
    done = run_cli("run", "--tiny", "--workers", "0", "m.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert all(path.read_text() == "a user's file" for path in mine)


def test_a_glob_over_the_output_folder_does_not_take_results_as_photos(tmp_path):
    """Run twice: the second run resumes (same units), it does not stylize its own results."""
    (tmp_path / "pics").mkdir()
    for i, name in enumerate(("a", "b")):
        noise(48, 32, i).save(tmp_path / f"pics/{name}.png")
    noise(32, 32, 9).save(tmp_path / "s.png")
    small_manifest(tmp_path, "  - {name: j, content: 'pics/**/*', style: s.png}\n",
                   output="pics/out")
    first = run_cli("run", "--tiny", "--workers", "0", "m.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = run_cli("run", "--tiny", "--workers", "0", "m.yaml", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "0 done, 2 already done" in second.stderr
    assert sorted(p.name for p in (tmp_path / "pics/out/j").iterdir()) == ["a.png", "b.png"]


def test_a_glob_through_a_symlink_cycle_ends_quickly_with_each_image_once(tmp_path, capsys,
                                                                          monkeypatch):
    (tmp_path / "pics/deep").mkdir(parents=True)
    noise(48, 32).save(tmp_path / "pics/deep/a.png")
    noise(32, 32, 1).save(tmp_path / "s.png")
    (tmp_path / "pics/deep/loop").symlink_to(tmp_path / "pics")  # pics/deep/loop/deep/loop/…
    (tmp_path / "pics/same.png").symlink_to(tmp_path / "pics/deep/a.png")
    small_manifest(tmp_path, "  - {name: j, content: 'pics/**/*.png', style: s.png}\n")
    monkeypatch.chdir(tmp_path)
    loaded = manifest.load("m.yaml")
    assert loaded.jobs[0].contents == (tmp_path / "pics/deep/a.png",)
    assert cli.main(["validate", "m.yaml"]) == 0, capsys.readouterr().err


def test_a_fifo_manifest_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "m.yaml")
    done = run_cli("validate", "m.yaml", cwd=tmp_path)  # would block for good on open()
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["m.yaml: is not a regular file; expected a YAML manifest"]


@pytest.mark.parametrize("plan, message", [
    (None, "larger than 1024 MB; not a run plan"),  # a link to /dev/zero: refused, not read
    ("[]", "unreadable run plan (expected a mapping, got list)"),
    ('{"jobs": [], "units": [{"key": 1}], "videos": []}',
     "unreadable run plan (an entry of 'units' lacks key, job, hash, output, content)"),
    ('{"jobs": [{"name": "a", "settings": [1]}], "units": [], "videos": []}',
     "unreadable run plan (an entry of 'jobs' has a 'settings' that is not a mapping)"),
    ('{"jobs": [{"name": "a", "styles": [1]}], "units": [], "videos": []}',
     "unreadable run plan (an entry of 'jobs' has a 'styles' that is not a list of names)"),
])
def test_status_and_report_read_state_safely(tmp_path, plan, message):
    state = tmp_path / "out/.batch_style"
    state.mkdir(parents=True)
    if plan is None:
        (state / "plan.json").symlink_to("/dev/zero")
        message = "is a symbolic link to '/dev/zero', outside the output folder"
    else:
        (state / "plan.json").write_text(plan)
    for command in ("status", "report"):
        done = run_cli(command, "out", cwd=tmp_path)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr
        assert len(done.stderr.splitlines()) == 1 and message in done.stderr, done.stderr


def one_unit_run(folder: Path, record: dict | None = None) -> Path:
    """A run folder whose plan holds one unit, out/a/c.png, and whose ledger says it is done;
    its content and style are missing, so a picture in the report can only be the result."""
    out = (folder / "out").resolve()
    (out / ".batch_style").mkdir(parents=True)
    (out / "a").mkdir()
    plan = {"jobs": [{"name": "a"}], "videos": [],
            "units": [{"key": "a/c", "job": "a", "hash": "h", "output": str(out / "a/c.png"),
                       "content": "/nowhere/c.png", "styles": ["/nowhere/s.png"]}]}
    (out / ".batch_style/plan.json").write_text(json.dumps(plan))
    record = {"key": "a/c", "status": "done", "hash": "h", "time": 1.0, **(record or {})}
    (out / ".batch_style/ledger.jsonl").write_text(json.dumps(record) + "\n")
    return out


@pytest.mark.parametrize("state", ["plan.json", "ledger.jsonl", "lock", "workers"])
def test_status_report_and_serve_read_no_state_through_a_link_out(tmp_path, state):
    out = one_unit_run(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if (out / ".batch_style" / state).exists():
        (out / ".batch_style" / state).rename(elsewhere / state)
    (out / ".batch_style" / state).symlink_to(elsewhere / state)
    for command in (["status"], ["report"], ["serve", "--port", "0"]):
        done = run_cli(*command, "out", cwd=tmp_path)
        assert done.returncode == 1
        assert done.stderr.splitlines() == [
            f"out/.batch_style/{state}: is a symbolic link to '{elsewhere.resolve() / state}', "
            f"outside the output folder; remove it"], done.stderr


@pytest.mark.parametrize("result", ["fifo", "link-out", "folder"])
def test_status_and_report_take_only_regular_results_inside_the_folder(tmp_path, result):
    """A FIFO at a result's name used to hang `report`, a link out to embed another picture in
    report.html; `run` refuses both folders, and neither counts as the result here."""
    out = one_unit_run(tmp_path)
    noise(16, 16).save(tmp_path / "secret.png")
    if result == "fifo":
        os.mkfifo(out / "a/c.png")
    elif result == "link-out":
        (out / "a/c.png").symlink_to(tmp_path / "secret.png")
    else:
        (out / "a/c.png").mkdir()
    shown = run_cli("status", "out", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "0 done, 0 failed, 1 pending" in shown.stdout
    made = run_cli("report", "out", cwd=tmp_path)
    assert made.returncode == 0 and made.stderr == "", made.stderr
    page = (out / "report.html").read_text()
    assert "data:image" not in page and ">1</b><span>pending" in page


def test_status_and_report_skip_ledger_fields_of_the_wrong_type(tmp_path):
    out = one_unit_run(tmp_path, {"seconds": "soon", "losses": [1], "history": "abc",
                                  "steps": "many", "error": 3, "metrics": {"flicker": "x"}})
    (out / "a/c.png").write_bytes(encoded(noise(16, 16), "PNG"))
    for command in ("status", "report"):
        done = run_cli(command, "out", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert "1 done" in run_cli("status", "out", cwd=tmp_path).stdout


def test_names_that_are_not_utf8_or_hold_escape_codes_are_written_escaped(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate((b"\xff-latin1.png", b"a\x1b[2Jb.png", b"new\nline.png")):
        noise(48, 32, i).save(os.fsdecode(bytes(photos) + b"/" + name))
    noise(32, 32, 9).save(tmp_path / "s.png")
    small_manifest(tmp_path, "  - {name: j, content: photos, style: s.png}\n")
    done = run_cli("run", "--tiny", "--workers", "0", "m.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\x1b[2J" not in done.stderr and "Logging error" not in done.stderr
    assert "a\\x1b[2Jb" in done.stderr
    log = (tmp_path / "out/run.log").read_text(encoding="utf-8")
    assert "\\udcff-latin1" in log and "new\\nline" in log and "\x1b" not in log
    assert (tmp_path / "out/report.html").read_text(encoding="utf-8").count("\\udcff") >= 1
    assert len(list((tmp_path / "out/j").glob("*.png"))) == 3


def test_two_manifests_into_one_folder_both_show_in_status_and_report(tmp_path):
    noise(48, 32).save(tmp_path / "c.png")
    noise(32, 32, 1).save(tmp_path / "s.png")
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(
            f"version: 1\noutput: out\ndefaults: {{size: 32, steps: 1}}\n"
            f"jobs:\n  - {{name: job-{name}, content: c.png, style: s.png}}\n")
        done = run_cli("run", "--tiny", "--workers", "0", f"{name}.yaml", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    status = run_cli("status", "out", cwd=tmp_path)
    assert "2 done, 0 failed, 0 pending" in status.stdout, status.stdout
    assert "job-a:" in status.stdout and "job-b:" in status.stdout
    page = (tmp_path / "out/report.html").read_text()
    assert 'id="u-job-a"' in page and 'id="u-job-b"' in page


def test_stylize_checks_where_it_writes_before_the_work(tmp_path):
    noise(48, 32).save(tmp_path / "c.png")
    noise(32, 32, 1).save(tmp_path / "s.png")
    (tmp_path / "results").mkdir()
    done = run_cli("stylize", "c.png", "s.png", "-o", "c.png", "--tiny", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["batch-style: error: --output: 'c.png' is an input; the "
                                        "result would overwrite it"]
    done = run_cli("stylize", "c.png", "s.png", "-o", "results", "--tiny", "--size", "32",
                   "--steps", "1", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "results/c_s.png").is_file()


def test_negative_workers_is_a_usage_error_before_anything_is_written(tmp_path):
    noise(48, 32).save(tmp_path / "c.png")
    noise(32, 32, 1).save(tmp_path / "s.png")
    small_manifest(tmp_path, PAIR)
    done = run_cli("run", "--workers", "-1", "m.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--workers: expected 0 or more, got -1" in done.stderr
    assert not (tmp_path / "out").exists()


def test_pillow_warnings_name_the_image_not_pillow(tmp_path):
    """A JPEG whose EXIF claims more data than the file holds: Pillow warns from its own
    source file; the line must name the photo."""
    image = Image.new("RGB", (48, 32), (200, 10, 10))
    exif = Image.Exif()
    exif[0x010E] = "x" * 40  # ImageDescription, stored out of line
    data = bytearray(encoded_with_exif(image, exif))
    tiff = data.index(b"Exif\x00\x00") + 6
    order = "<" if data[tiff:tiff + 2] == b"II" else ">"
    at = data.index(struct.pack(f"{order}H", 0x010E), tiff)  # the tag's entry
    data[at + 4:at + 8] = struct.pack(f"{order}I", 100_000)  # its count: past the file's end
    (tmp_path / "c.jpg").write_bytes(bytes(data))
    noise(32, 32, 1).save(tmp_path / "s.png")
    small_manifest(tmp_path, "  - {name: a, content: c.jpg, style: s.png}\n")
    done = run_cli("validate", "m.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert warned and all(f"{tmp_path / 'c.jpg'}: " in line for line in warned), warned
    assert "PIL" not in done.stderr


def encoded_with_exif(image: Image.Image, exif: Image.Exif) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def test_a_temporary_fits_in_a_name_wherever_its_final_file_does(tmp_path):
    from batch_style.atomic import TEMPORARY, atomic_write_text, temporary_name

    final = tmp_path / ("n" * 251 + ".png")  # 255 bytes
    assert len(temporary_name(final).name.encode()) <= 255
    assert TEMPORARY.fullmatch(temporary_name(final).name)
    atomic_write_text(final, "done")
    assert final.read_text() == "done"


def test_frame_steps_follow_steps_unless_given():
    from batch_style.settings import resolve

    assert resolve({"steps": 6}).frame_steps == 1
    assert resolve({"steps": 500}).frame_steps == 100
    assert resolve({"steps": 6, "frame_steps": 4}).frame_steps == 4
    assert resolve({"preset": "draft"}).frame_steps == 20  # the preset's 100 steps


def test_a_video_ffmpeg_cannot_write_fails_alone(media_dir, write_manifest, monkeypatch):
    """ffmpeg refusing one video used to stop the run with an internal error."""
    from batch_style import orchestrator as runner
    from batch_style.media.encode import FfmpegError

    def refuse(frames, path, fps, **kwargs):
        raise FfmpegError("ffmpeg failed (exit status 1): Invalid argument\nffmpeg ...\nlog")

    monkeypatch.setattr(encode, "write_mp4", refuse)
    path = write_manifest([
        {"name": "clip", "video": str(media_dir / "clip.mp4"), "end": 0.1,
         "style": str(media_dir / "style.png"), "outputs": ["mp4", "gif"]},
        {"name": "pair", "content": str(media_dir / "photo.png"),
         "style": str(media_dir / "style.png")}])
    summary = runner.run([path], runner.RunOptions(workers=0, tiny=True))
    assert summary.exit_code == 1
    assert summary.failed == [("clip/clip#video", "ffmpeg failed (exit status 1): Invalid "
                                                  "argument")]
    out = path.parent / "out"
    assert (out / "pair/photo.png").is_file() and not (out / "clip/clip.mp4").exists()


@pytest.mark.parametrize("settings, message", [
    ("{memory_budget: 100, size: 2048}", "memory_budget: a 2048×1365 px picture needs at least"),
    ("{tile_size: 40}", "expected a multiple of 16, got 40"),
    ("{tile_size: 48, style_layers: [block5_pool]}", "tile_size: expected a multiple of 32"),
])
def test_tiles_and_memory_budgets_that_cannot_work_are_refused_at_validation(tmp_path, settings,
                                                                             message):
    noise(48, 32).save(tmp_path / "c.png")
    noise(32, 32, 1).save(tmp_path / "s.png")
    (tmp_path / "m.yaml").write_text(f"version: 1\noutput: out\njobs:\n  - {{name: a, content: "
                                     f"c.png, style: s.png, settings: {settings}}}\n")
    done = run_cli("validate", "m.yaml", cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert message in done.stderr and done.stderr.startswith("m.yaml:")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# Round 3: a command's inputs stay as they are; masks, profiles and disks that made nonsense


# `stylize` arguments (run in a folder holding c.png 48×32, s.png, m.png 48×32, black.png,
# blacksq.png, turned.jpg, r.0002.png) and the one line it must print; exit 2, nothing written.
STYLIZE_CASES = [
    ("style-mask-as-output", "c.png s.png --style-mask m.png -o m.png",
     "--output: 'm.png' is an input; the result would overwrite it"),
    ("protect-as-output", "c.png s.png --protect m.png -o m.png",
     "--output: 'm.png' is an input; the result would overwrite it"),
    ("image-mask-as-progress-gif", "c.png s.png --style-image-mask s.gif --progress-gif s.gif",
     "--progress-gif: 's.gif' is an input; the result would overwrite it"),
    ("save-every-over-a-style", "c.png r.0002.png --save-every 1 -o r.png",
     "--output: 'r.0002.png' is an input; the picture of a step would overwrite it"),
    ("save-every-over-a-mask-by-a-link", "c.png s.png --protect link.png --save-every 5 -o q.png",
     "--output: 'link.png' is an input; the picture of a step would overwrite it"),
    ("weights-as-output", "c.png s.png --weights m.png -o m.png",
     "--output: 'm.png' is an input; the result would overwrite it"),
    ("bit-depth-16-jpeg", "c.png s.png --bit-depth 16 -o x.jpg",
     "--bit-depth: 16 bits per channel are written as PNG only; name the result .png, not "
     "'x.jpg'"),
    ("style-mask-all-black", "c.png s.png --style-mask black.png",
     "--style-mask: 'black.png' is black everywhere: its style would go nowhere"),
    ("image-mask-all-black", "c.png s.png --style-image-mask blacksq.png",
     "--style-image-mask: 'blacksq.png' is black everywhere: its style would be taken from "
     "nothing"),
    ("mask-of-the-stored-pixels", "turned.jpg s.png --protect m.png",
     "--protect: 'm.png' is 48×32 and its picture 32×48: a mask must have its picture's aspect"),
    ("output-under-a-file", "c.png s.png -o c.png/x.png", "--output: '@/c.png' is not a folder"),
]


@pytest.fixture(scope="module")
def stylize_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("stylize")
    noise(48, 32).save(folder / "c.png")
    noise(32, 32, 1).save(folder / "s.png")
    noise(32, 32, 1).save(folder / "s.gif")
    noise(48, 32, 8).save(folder / "m.png")
    noise(32, 32, 2).save(folder / "r.0002.png")
    Image.new("L", (48, 32)).save(folder / "black.png")
    Image.new("L", (32, 32)).save(folder / "blacksq.png")
    (folder / "turned.jpg").write_bytes(turned_jpeg(48, 32))
    noise(48, 32, 3).save(folder / "q.0010.png")  # named as `-o q.png`'s step-10 picture
    (folder / "link.png").symlink_to(folder / "q.0010.png")
    return folder


@pytest.mark.parametrize("case_id, args, line", STYLIZE_CASES, ids=[c[0] for c in STYLIZE_CASES])
def test_stylize_refuses_before_any_work_and_changes_nothing(stylize_folder, case_id, args, line):
    before = snapshot(stylize_folder)
    done = run_cli("stylize", "--tiny", "-q", *args.split(), cwd=stylize_folder)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr
    expected = "batch-style: error: " + line.replace("@", str(stylize_folder))
    assert done.stderr.startswith(expected), done.stderr
    assert snapshot(stylize_folder) == before


def icc_profiles() -> dict[str, bytes]:
    """The profiles of the ICC case: a good sRGB one, and three a result must not carry."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return {"good": srgb, "huge": srgb + bytes(1 << 20),
            "lab": ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(),
            "corrupt": b"not a profile at all " * 40}


def test_results_carry_only_a_sane_rgb_profile_and_black_masks_fail_their_unit(tmp_path):
    """One run: a huge profile (unreadable results), a Lab one and a damaged one are dropped
    with one warning each; the sRGB one is kept; a black mask fails its unit in one line."""
    (tmp_path / "photos").mkdir()
    profiles = icc_profiles()
    for seed, (name, profile) in enumerate(profiles.items()):
        noise(48, 32, seed).save(tmp_path / f"photos/{name}.jpg", icc_profile=profile)
    noise(32, 32, 9).save(tmp_path / "s.png")
    Image.new("L", (48, 32)).save(tmp_path / "black.png")
    small_manifest(tmp_path, "  - {name: a, content: photos, style: s.png, settings: "
                             "{size: 32, steps: 1}}\n"
                             "  - {name: b, content: photos/good.jpg, style: {image: s.png, "
                             "mask: black.png}, settings: {size: 32, steps: 1}}\n")
    done = run_cli("run", "--tiny", "--workers", "0", "m.yaml", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    for name in ("huge", "lab", "corrupt"):
        with Image.open(tmp_path / f"out/a/{name}.png") as result:
            result.load()
            assert "icc_profile" not in result.info
        warned = [line for line in done.stderr.splitlines()
                  if f"{name}.jpg: its ICC colour profile is" in line]
        assert len(warned) == 1, done.stderr
    with Image.open(tmp_path / "out/a/good.png") as result:
        assert result.info["icc_profile"] == profiles["good"]
    assert not (tmp_path / "out/b/good.png").exists()
    assert "black.png: is black everywhere: its style would go nowhere" in done.stderr


def unshared(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """`script` (sh) as root of its own user and mount namespace: tmpfs mounts of its own."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no user namespaces here: cannot mount a full or read-only file system")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PY": sys.executable}
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_full_disk_is_one_line_naming_the_file(tmp_path):
    noise(48, 32).save(tmp_path / "c.png")
    noise(32, 32, 1).save(tmp_path / "s.png")
    (tmp_path / "full").mkdir()
    done = unshared("mount -t tmpfs -o size=64k tmpfs full && "
                    "head -c 1M /dev/zero > full/filler 2>/dev/null; "
                    "$PY -m batch_style stylize c.png s.png -o full/r.png --tiny -q --size 32 "
                    "--steps 1", tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == ["full/r.png: cannot write it: no space left on device; "
                                        "free some space and run again"]


def test_validate_refuses_an_output_folder_on_a_read_only_mount_as_run_does(tmp_path):
    noise(48, 32).save(tmp_path / "c.png")
    noise(32, 32, 1).save(tmp_path / "s.png")
    (tmp_path / "ro").mkdir()
    small_manifest(tmp_path, PAIR, output="ro/out")
    done = unshared("mount -t tmpfs -o ro tmpfs ro && $PY -m batch_style validate m.yaml; "
                    "echo \"exit $?\"; $PY -m batch_style run --tiny m.yaml", tmp_path)
    line = "m.yaml:2: output: 'ro/out': cannot write into 'ro': a read-only file system"
    assert done.returncode == 2
    assert done.stdout.splitlines() == ["exit 2"]
    assert done.stderr.splitlines() == [line, line]


def test_an_upright_mask_of_a_turned_photo_is_accepted_by_validate(tmp_path):
    (tmp_path / "turned.jpg").write_bytes(turned_jpeg(48, 32))
    noise(32, 48, 1).save(tmp_path / "upright.png")
    noise(32, 32, 1).save(tmp_path / "s.png")
    small_manifest(tmp_path, "  - {name: a, content: turned.jpg, style: s.png, "
                             "protect: upright.png}\n")
    done = run_cli("validate", "m.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
