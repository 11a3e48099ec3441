"""Image sets, membership splits and the conversions between them.

An attack needs two things from this module: the candidate images (an :class:`ImageSet`)
and which of them the target was trained on (a :class:`Split`, stored as a small JSON
manifest). Images come from scikit-learn's bundled digits, an ``.npz`` file (memory-mapped when
uncompressed), an image folder (decoded per batch: :class:`FolderImages`) or uploaded files; :func:`resolve_data` turns the CLI's ``--data`` string into both.

Notation
--------
N       number of images
H, W    height and width in pixels (sizes are written ``HxW``)
C       channels, 1 (grayscale) or 3 (RGB)
uint8   pixel values 0..255; every stored image set is uint8 (N, H, W, C), channels last
id      a stable string naming one image (``"digits-0042"``, ``"members/cat.png"``, ``"17"``)

Design rules
------------
* Nothing is converted silently: :func:`convert_images` returns a :class:`Conversion` whose
  ``report`` says what was done (crop, resize filter, channel change) so the UI can show it.
* Untrusted input is decoded defensively: ``.npz`` files are opened with
  ``allow_pickle=False`` and uploads are size-checked before their pixels are decoded.
* Every input problem raises ``ValueError`` with a message naming the bad file or value,
  so a CLI or UI can show ``str(error)`` as is.
"""

from ..paths import ASSETS_DIR, DEFAULT_SPLIT_PATH
from .folder import FolderImages, FolderListing
from .images import (
    DIGITS_SOURCE,
    IMAGE_MAX_BYTES,
    IMAGE_MAX_PIXELS,
    IMAGE_SUFFIXES,
    UPLOAD_MAX_TOTAL_PIXELS,
    UPLOAD_SOURCE,
    Conversion,
    ImageSet,
    LazyImages,
    UploadResult,
    check_upload_pixels,
    convert_images,
    decode_image,
    load_uploads,
    read_image_header,
    upload_limits_text,
)
from .sources import load_digits, load_image_folder, load_npz, load_source, resolve_data
from .splits import SPLIT_FORMAT, Split, random_split

__all__ = [
    "ASSETS_DIR",
    "DEFAULT_SPLIT_PATH",
    "DIGITS_SOURCE",
    "IMAGE_MAX_BYTES",
    "IMAGE_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "SPLIT_FORMAT",
    "UPLOAD_MAX_TOTAL_PIXELS",
    "UPLOAD_SOURCE",
    "Conversion",
    "FolderImages",
    "FolderListing",
    "ImageSet",
    "LazyImages",
    "Split",
    "UploadResult",
    "check_upload_pixels",
    "convert_images",
    "decode_image",
    "load_digits",
    "load_image_folder",
    "load_npz",
    "load_source",
    "load_uploads",
    "read_image_header",
    "upload_limits_text",
    "random_split",
    "resolve_data",
]
