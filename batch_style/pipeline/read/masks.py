"""A job's masks: where each style goes, the part of a painting it comes from, what is protected."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from yaml.nodes import MappingNode, Node

from batch_style.errors import UserError
from batch_style.media import images
from batch_style.pipeline.jobs import IMAGE_EXTENSIONS, Masks
from batch_style.pipeline.read.media_probe import Media
from batch_style.pipeline.read.paths import Files, kind_of, missing, stem_matches
from batch_style.pipeline.read.yaml_nodes import INVALID, MAP, Nodes, got

STYLE_KEYS = ("image", "mask", "image_mask")
STYLE_EXPECTED = "a style image, or a mapping with 'image' and optionally 'mask' and 'image_mask'"
SHOWN_MISSING = 3  # photos named in one line about a mask folder that lacks theirs


class StyleEntry(NamedTuple):
    """One item of a job's `style`: the painting and, when it is a mapping, its masks' nodes."""

    image: Node            # the style image's node
    field: str             # where the image is written: jobs[i].style[k] or ….style[k].image
    item_field: str        # the item: jobs[i].style[k]
    mask: Node | None
    image_mask: Node | None


class MaskReader:
    """Reads `style` items with masks and `protect`, and checks every mask like an input."""

    def __init__(self, nodes: Nodes, files: Files, media: Media):
        self.nodes, self.files, self.media = nodes, files, media

    def style_entry(self, item: Node, field: str) -> StyleEntry | None:
        """A `style` item: a path, or a mapping {image, mask, image_mask} (None: reported)."""
        if not (isinstance(item, MappingNode) and item.tag == MAP):
            return StyleEntry(item, field, field, None, None)
        entries = self.nodes.entries(item, field, STYLE_KEYS, STYLE_EXPECTED)
        if entries is None:
            return None
        if "image" not in entries:
            self.nodes.error(item, f"{field}.image", "missing; expected the style image")
            return None
        return StyleEntry(entries["image"][1], f"{field}.image", field,
                          entries.get("mask", (None, None))[1],
                          entries.get("image_mask", (None, None))[1])

    def masks(self, kind: str | None, contents: tuple[Path, ...], video: Path | None, info: Any,
              styles: list[tuple[Path | None, StyleEntry]], protect: Node | None, field: str,
              max_pixels: int) -> Masks:
        """The job's masks, each checked against the pictures it goes on: exists, is an image
        (or a mask video), has their aspect ratio; a folder holds one for every photo."""
        if kind is None:
            return Masks()
        pictures = self._pictures(kind, contents, video, info, max_pixels)
        on_result = [self.on_result(entry.mask, f"{entry.item_field}.mask", kind, pictures,
                                    info, max_pixels) if entry.mask is not None else None
                     for _, entry in styles]
        on_images = [self.on_style(entry.image_mask, f"{entry.item_field}.image_mask", path,
                                   max_pixels) if entry.image_mask is not None else None
                     for path, entry in styles]
        protected = self.on_result(protect, f"{field}.protect", kind, pictures, info,
                                   max_pixels) if protect is not None else None
        return Masks(styles=tuple(on_result) if any(on_result) else (),
                     images=tuple(on_images) if any(on_images) else (), protect=protected)

    def _pictures(self, kind, contents, video, info, max_pixels) -> list[tuple[Path, tuple]]:
        """(file, (w, h)) of what a result mask goes on: the photos, or the video's frames."""
        if kind == "video":
            return [(video, info.size)] if info is not None and getattr(info, "size", None) else []
        pictures = []
        for path in contents:
            size, problem = self.media.probe_image(path, max_pixels)
            if problem is None:
                pictures.append((path, size))
        return pictures

    # -- a mask on the result ---------------------------------------------------------------
    def on_result(self, node: Node, field: str, kind: str, pictures: list, info: Any,
                  max_pixels: int) -> Path | None:
        errors = len(self.nodes.errors)
        text = self.nodes.value(node, field)
        if text is INVALID:
            return None
        what = {"images": "a mask image or a folder of them",
                "video": "a mask image or a mask video"}[kind]
        if not isinstance(text, str) or not text:
            self.nodes.error(node, field, f"expected {what}, {got(text)}")
            return None
        path = self.files.checked_path(text, node, field)
        if path is None:
            return None
        found = kind_of(path)
        if found == "missing":
            self.nodes.error(node, field, missing(text, "file or folder" if kind == "images"
                                                   else "file", path))
        elif found == "other":
            self.nodes.error(node, field, f"{text!r} is not a regular file")
        elif found not in ("file", "folder"):
            self.nodes.error(node, field, f"{text!r} cannot be read: {found}")
        elif self.files.in_results(path, node, field):
            pass
        elif found == "folder" and kind == "video":
            self.nodes.error(node, field, f"{text!r} is a folder; a video job's mask is {what}")
        elif found == "folder":
            self._folder(path, node, field, pictures, max_pixels)
        elif kind == "video" and path.suffix.lower() not in IMAGE_EXTENSIONS:
            self._mask_video(path, node, field, info)
        else:
            self._image(path, node, field, pictures, max_pixels, frames=kind == "video")
        if len(self.nodes.errors) == errors and found == "file" and field.endswith(".mask"):
            self._black(path, node, field, "result", max_pixels)
        return path if len(self.nodes.errors) == errors else None

    def _image(self, path: Path, node: Node, field: str, pictures: list, max_pixels: int,
               frames: bool = False) -> None:
        """One mask image for every picture: readable, of their aspect ratio."""
        size = self._size(path, node, field, max_pixels)
        if size is None:
            return
        differ = [(p, s) for p, s in pictures if images.aspect_differs(size, s)]
        if differ:
            (picture, picture_size), more = differ[0], len(differ) - 1
            others = f" (and {more} more of the job's pictures)" if more else ""
            self.nodes.error(node, field, self._shape_problem(path, size, picture, picture_size,
                                                              frames) + others)

    def _folder(self, folder: Path, node: Node, field: str, pictures: list,
                max_pixels: int) -> None:
        """A folder of masks: one for each photo, named as it is but for the extension."""
        if not self.files.images_in(folder, node, field):
            self.nodes.error(node, field, f"no images in mask folder "
                             f"'{self.files.shown_path(folder)}'")
            return
        lacking = []
        for picture, picture_size in pictures:
            found = stem_matches(folder, picture)
            if not found:
                lacking.append(picture)
            elif len(found) > 1:
                self.nodes.error(node, field, f"'{self.files.shown_path(found[0])}' and "
                                 f"'{self.files.shown_path(found[1])}' both match "
                                 f"'{picture.name}'; keep one mask per photo")
            elif not self.files.in_results(found[0], node, field):  # a link to a result
                size = self._size(found[0], node, field, max_pixels)
                if size is not None and images.aspect_differs(size, picture_size):
                    self.nodes.error(node, field, self._shape_problem(found[0], size, picture,
                                                                      picture_size))
                elif size is not None and field.endswith(".mask"):
                    self._black(found[0], node, field, "result", max_pixels)
        if lacking:
            names = ", ".join(f"'{p.name}'" for p in lacking[:SHOWN_MISSING])
            more = f" and {len(lacking) - SHOWN_MISSING} more" if len(lacking) > SHOWN_MISSING \
                else ""
            self.nodes.error(node, field, f"no mask for {names}{more} in "
                             f"'{self.files.shown_path(folder)}' (a mask is found by its "
                             f"photo's name without the extension, e.g. "
                             f"'{lacking[0].stem}.png')")

    def _mask_video(self, path: Path, node: Node, field: str, info: Any) -> None:
        """A mask video follows the frames: as many frames as the video, of its shape."""
        mask_info = self.media.probe_video(path, node, field)
        if mask_info is None or info is None:
            return
        shown, video = self.files.shown_path(path), self.files.shown_path(info.path)
        if mask_info.n_frames != info.n_frames:
            self.nodes.error(node, field, f"'{shown}' has {mask_info.n_frames} frames, "
                             f"'{video}' {info.n_frames}: a mask video needs one frame for "
                             f"each of the video's")
        elif images.aspect_differs(mask_info.size, info.size):
            self.nodes.error(node, field, self._shape_problem(path, mask_info.size, info.path,
                                                              info.size, frames=True))

    # -- a mask on a style image --------------------------------------------------------------
    def on_style(self, node: Node, field: str, style: Path | None,
                 max_pixels: int) -> Path | None:
        errors = len(self.nodes.errors)
        path = self.files.image_file(self.nodes.value(node, field), node, field)
        if path is None or self.files.in_results(path, node, field):
            return None
        size = self._size(path, node, field, max_pixels)
        style_size = self.media.probe_image(style, max_pixels)[0] if style else None
        if size is not None and style_size is not None and images.aspect_differs(size, style_size):
            self.nodes.error(node, field, self._shape_problem(path, size, style, style_size))
        elif size is not None:
            self._black(path, node, field, "style", max_pixels)
        return path if len(self.nodes.errors) == errors else None

    # -- helpers -----------------------------------------------------------------------------
    def _size(self, path: Path, node: Node, field: str, max_pixels: int) -> tuple | None:
        size, problem = self.media.probe_image(path, max_pixels)
        if problem:
            self.nodes.error(node, field, f"'{self.files.shown_path(path)}': {problem}")
        return size

    def _black(self, path: Path, node: Node, field: str, kind: str, max_pixels: int) -> None:
        """`validate` (which decodes every image) refuses a style's mask that selects nothing;
        `run` leaves that to the unit (worker.py), so as not to decode every mask up front."""
        if not self.media.verify_pixels:
            return
        try:
            black = images.is_black(images.load_mask(path, max_pixels))
        except UserError:
            return  # unreadable: said by the size check or the unit
        if black:
            self.nodes.error(node, field, f"'{self.files.shown_path(path)}' "
                             f"{images.BLACK_MASK[kind]}")

    def _shape_problem(self, mask: Path, size, picture: Path, picture_size,
                       frames: bool = False) -> str:
        (w, h), (pw, ph) = size, picture_size
        shown = self.files.shown_path(picture)
        picture_text = f"the frames of '{shown}' are" if frames else f"'{shown}' is"
        return (f"'{self.files.shown_path(mask)}' is {w}\u00d7{h} and {picture_text} "
                f"{pw}\u00d7{ph}: a mask must have its picture's aspect ratio (within 1%; it is "
                f"resized with the picture)")
