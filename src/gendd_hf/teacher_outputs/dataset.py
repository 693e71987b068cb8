"""Training from stored teacher outputs: stream them, join each to its image, replay one stored view per epoch.

The join depends on how the images are loaded:

- a map-style `datasets.Dataset` (memory-mapped Arrow, e.g. Fashion-MNIST or ImageNet prepared on disk): the outputs
  stream (shuffled with a buffer and shard order, split by process) and each row fetches its image by id, a random
  access; with an `id_column` the ids are looked up in a dictionary built once from that column, otherwise the id is
  the row index and the image dataset must have the recorded length;
- a streamed `datasets.IterableDataset`: the two streams are zipped row by row (`concatenate_datasets(axis=1)`), so
  both must be in the recorded order; shuffling then uses a buffer over the zipped rows.

Either way every row is verified: its id (when the images have an id column) and the digest of its encoded image must
be the recorded ones, so a different split, order or image is an error, never silent misalignment. Before streaming,
the shards' `id` columns are read to check that each image has exactly one row, so a shard overwritten with a copy of
another (whose rows each pass) is an error too.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset, IterableDataset, concatenate_datasets
from torch import nn

from ..data.loading import shard_for_process
from .images import as_image_id, decode_image, image_digest, undecoded
from .store import TeacherOutputs, TeacherOutputsMismatchError, dense_logits
from .views import View, ViewConfig, apply_view, epoch_view_index


# Columns of the images, renamed in a zipped stream so that they never collide with the outputs' columns.
_IMAGE, _LABEL, _IMAGE_ID = "__image", "__label", "__image_id"


# Rows read from the stream at a time: Arrow columns are converted once per batch instead of once per row.
_READ_BATCH_SIZE = 64


class TeacherOutputsDataset(torch.utils.data.IterableDataset):
    """Training examples from stored teacher outputs: `pixel_values` (the replayed view), `labels` (when the images
    have labels), `teacher_features` (float16) and, unless stored without logits, `teacher_logits`.

    Build it with [`teacher_outputs_dataset`]. `set_epoch(epoch)` (called by the Trainer through Accelerate) picks
    each image's view for that epoch ([`~gendd_hf.teacher_outputs.views.epoch_view_index`]) and reshuffles.
    `len()` is the number of images when the dataset is not split between processes. DataLoader workers read
    disjoint parts of the stream (whole shards when their count divides evenly).
    """

    def __init__(
        self,
        images,
        outputs: TeacherOutputs,
        stream: IterableDataset,
        seed: int,
        shuffled: bool,
        process_split: bool,
        image_column: str,
        label_column: str,
    ):
        self.outputs = outputs
        self.stream = stream
        self.seed = seed
        self.shuffled = shuffled
        self.epoch = 0
        self.process_split = process_split
        self.image_column, self.label_column = image_column, label_column
        self.zipped = isinstance(images, IterableDataset)
        self.images = None if self.zipped else images
        self.row_of_id = None
        id_column = outputs.settings.id_column
        if self.images is not None and id_column is not None:
            ids = [as_image_id(value) for value in images[id_column]]
            self.row_of_id = {image_id: row for row, image_id in enumerate(ids)}
            if len(self.row_of_id) != len(ids):
                raise ValueError(f"The image dataset's id column {id_column!r} holds duplicate ids.")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.shuffled:  # `datasets` reorders the shards of a stream from its epoch, even without shuffle()
            self.stream.set_epoch(self.epoch)

    def __len__(self) -> int:
        if self.process_split:
            # transformers' `has_length` reads TypeError as "no length": set max_steps.
            raise TypeError("The length of one process's part of a stream is not known; set max_steps.")
        return self.outputs.num_images

    def __iter__(self):
        stream = self.stream
        worker = torch.utils.data.get_worker_info()
        if worker is not None and worker.num_workers > 1:
            stream = shard_for_process(stream, worker.id, worker.num_workers)
        try:
            for table in stream.iter(batch_size=_READ_BATCH_SIZE):
                yield from self._examples(table)
        except pa.ArrowInvalid as error:
            # Zipping streams of different lengths pads the shorter one with missing values, which `datasets` may
            # also fail to batch in Arrow.
            if not self.zipped:
                raise
            raise TeacherOutputsMismatchError(
                f"The image stream and the teacher outputs in {self.outputs.source} have different lengths "
                f"({str(error).splitlines()[0]}); stream the images the outputs were computed from."
            ) from error

    def _per_view(self, table: pa.Table, name: str) -> np.ndarray:
        """A per-view column of a batch as an array of shape `(rows, K, n)`, straight from Arrow."""
        num_views = self.outputs.settings.num_views
        views = table.column(name).combine_chunks()
        lengths = views.value_lengths().to_numpy(zero_copy_only=False)
        wrong = np.flatnonzero(lengths != num_views)
        if wrong.size:
            row = int(wrong[0])
            raise TeacherOutputsMismatchError(
                f"The teacher outputs of image {table.column('id')[row].as_py()!r} hold {lengths[row]} views, but "
                f"{self.outputs.source} records num_views={num_views}: the shard is damaged or of another "
                "precomputation."
            )
        values = views.flatten()
        values = values.flatten() if pa.types.is_list(values.type) else values
        return values.to_numpy(zero_copy_only=False).reshape(len(table), num_views, -1)

    def _images(self, table: pa.Table, stored_ids: list) -> tuple[list, list, list]:
        """`(undecoded images, labels or Nones, ids found on the image side or Nones)` of a batch of outputs rows."""
        if self.zipped:
            columns = {
                name: table.column(name).to_pylist() if name in table.column_names else [None] * len(table)
                for name in (_IMAGE, _LABEL, _IMAGE_ID)
            }
            if None in stored_ids or None in columns[_IMAGE]:
                raise pa.ArrowInvalid("one stream ended before the other (length mismatch)")
            return columns[_IMAGE], columns[_LABEL], columns[_IMAGE_ID]
        if self.row_of_id is None:
            positions = stored_ids
        else:
            missing = [image_id for image_id in stored_ids if image_id not in self.row_of_id]
            if missing:
                raise TeacherOutputsMismatchError(
                    f"The teacher outputs hold image id {missing[0]!r}, which is not in the image dataset's "
                    f"{self.outputs.settings.id_column!r} column: these are not the images the outputs were computed "
                    "from."
                )
            positions = [self.row_of_id[image_id] for image_id in stored_ids]
        rows = self.images[positions]
        return rows[self.image_column], rows.get(self.label_column, [None] * len(positions)), stored_ids

    def _examples(self, table: pa.Table):
        outputs, settings = self.outputs, self.outputs.settings
        raw_ids = table.column("id").to_pylist()
        values, labels, image_ids = self._images(table, raw_ids)
        stored_ids = [as_image_id(value) for value in raw_ids]
        digests = table.column("image_digest").to_pylist()
        per_view = {
            name: self._per_view(table, name) for name in table.column_names if name.startswith(("view_", "teacher_"))
        }
        for i, stored_id in enumerate(stored_ids):
            if image_ids[i] is not None and as_image_id(image_ids[i]) != stored_id:
                raise TeacherOutputsMismatchError(
                    f"Image id {as_image_id(image_ids[i])!r} met the teacher outputs of image id {stored_id!r}: the "
                    f"image stream is not in the order of the outputs in {outputs.source}."
                )
            if image_digest(values[i]) != digests[i]:
                raise TeacherOutputsMismatchError(
                    f"The image with id {stored_id!r} is not the one the teacher outputs in {outputs.source} were "
                    "computed from (its digest differs): use the same image dataset, split and order (or an id column)."
                )
            k = epoch_view_index(self.seed, self.epoch, stored_id, settings.num_views)
            top, left, height, width = (int(v) for v in per_view["view_crop"][i, k])
            view = View(
                top,
                left,
                height,
                width,
                hflip=bool(per_view["view_hflip"][i, k, 0]),
                aug_seed=int(per_view["view_aug_seed"][i, k, 0]),
            )
            example = {
                "pixel_values": apply_view(decode_image(values[i]), view, settings.view_config),
                "teacher_features": torch.tensor(per_view["teacher_features"][i, k], dtype=torch.float16),
            }
            if labels[i] is not None:
                example["labels"] = torch.tensor(int(labels[i]))
            if settings.logits == "full":
                example["teacher_logits"] = torch.tensor(per_view["teacher_logits"][i, k], dtype=torch.float16)
            elif settings.logits == "topk":
                example["teacher_logits"] = dense_logits(
                    torch.tensor(per_view["teacher_logits_topk_values"][i, k]),
                    torch.tensor(per_view["teacher_logits_topk_indices"][i, k]),
                    torch.tensor(per_view["teacher_logits_logsumexp"][i, k, 0]),
                    outputs.teacher.num_classes,
                )
            yield example


def _zipped_stream(
    images: IterableDataset, stream: IterableDataset, settings, image_column: str, label_column: str
) -> IterableDataset:
    names = {image_column: _IMAGE}
    if label_column in (images.column_names or ()):
        names[label_column] = _LABEL
    if settings.id_column is not None:
        names[settings.id_column] = _IMAGE_ID
    images = images.select_columns(list(names)).rename_columns(names)
    return concatenate_datasets([images, stream], axis=1)


def teacher_outputs_dataset(
    images: Dataset | IterableDataset,
    teacher_outputs: str | TeacherOutputs,
    view_config: ViewConfig | None = None,
    teacher: str | nn.Module | None = None,
    split: str = "train",
    seed: int = 0,
    shuffle_buffer_size: int | None = 1000,
    process_index: int = 0,
    num_processes: int = 1,
    image_column: str = "image",
    label_column: str = "label",
    revision: str | None = None,
    token: str | None = None,
) -> TeacherOutputsDataset:
    """The training dataset of stored teacher outputs: a stream of `pixel_values`, `labels`, `teacher_features` and
    `teacher_logits` (see [`TeacherOutputsDataset`]) that [`~gendd_hf.GenDDTrainer`] trains on without a teacher.

    Args:
        images (`datasets.Dataset` or `datasets.IterableDataset`):
            The images the outputs were computed from, with an `image` column and optional `label` column.
        teacher_outputs (`str` or [`TeacherOutputs`]):
            A local folder, a Hub dataset repo id (streamed from the Hub), or outputs already loaded.
        view_config ([`ViewConfig`], *optional*):
            The transform training expects; an error if it is not the recorded one. `None` uses the recorded one.
        teacher (`str` or `nn.Module`, *optional*):
            The teacher training expects, by name or as a model (weights fingerprint); an error if it differs.
        split (`str`, *optional*, defaults to `"train"`): the split of the outputs.
        seed (`int`, *optional*, defaults to 0): seed of the per-epoch view choice and of the shuffle.
        shuffle_buffer_size (`int`, *optional*, defaults to 1000):
            Buffer of `IterableDataset.shuffle` (shard order and buffer, reshuffled each epoch); `None` streams in the
            stored order, every epoch.
        process_index / num_processes (`int`, *optional*):
            Read only this process's part (`gendd_hf.data.shard_for_process`: whole shards when their count divides
            evenly). Leave the defaults with `GenDDTrainer`, which by default reads the stream on the main process and
            sends each process its part of every batch.
        image_column / label_column (`str`, *optional*): the image dataset's columns.
        revision / token (`str`, *optional*): Hub revision and token of a repo id.

    Returns:
        [`TeacherOutputsDataset`]; batch it with `transformers.default_data_collator` (the Trainer's default).
        `dataset.outputs` is the [`TeacherOutputs`] (teacher record, classifier, settings).
    """
    outputs = (
        teacher_outputs
        if isinstance(teacher_outputs, TeacherOutputs)
        else TeacherOutputs.load(teacher_outputs, split=split, revision=revision, token=token)
    )
    outputs.check(view_config=view_config, teacher=teacher)
    outputs.check_ids()
    settings = outputs.settings
    images = undecoded(images, image_column)
    stream = outputs.stream()
    if isinstance(images, IterableDataset):
        stream = _zipped_stream(images, stream, settings, image_column, label_column)
    elif settings.id_column is None and len(images) != outputs.num_images:
        raise TeacherOutputsMismatchError(
            f"The image dataset has {len(images)} rows but the teacher outputs in {outputs.source} were computed for "
            f"{outputs.num_images} images identified by row index: pass the same split of the same dataset."
        )
    if shuffle_buffer_size:
        stream = stream.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
    if num_processes > 1:
        stream = shard_for_process(stream, process_index, num_processes)
    stream = stream.with_format("arrow")
    return TeacherOutputsDataset(
        images, outputs, stream, seed, bool(shuffle_buffer_size), num_processes > 1, image_column, label_column
    )


__all__ = ["TeacherOutputsDataset", "teacher_outputs_dataset"]
