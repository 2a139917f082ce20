"""The decode policy of cxr-cascade, in plain Python: which image files are read at all.

One policy for every reader (`data check`, training's file validation, `predict`, `gradcam`) and,
through `pipelines.decode.check_header`, for the graph decoder inside the SavedModel. Only the
file's header is read, so a refused file costs microseconds, whatever its pixel count:

* PNG (8/16 bit) and JPEG only. GIF, BMP, TIFF, WebP are refused ("convert it to PNG").
* CMYK JPEG is refused: no decoder here converts CMYK to gray correctly (TensorFlow's decoder
  refuses it for one channel and returns raw, often inverted, ink channels otherwise).
* Each side at least `MIN_SIDE` pixels (a 1x1 image is not an X-ray).
* At most `max_pixels()` pixels: 50 megapixels by default, set with the environment variable
  `CXR_CASCADE_MAX_PIXELS` (a 20000x20000 PNG would otherwise take gigabytes to decode). The
  SavedModel keeps the cap that was in effect when it was exported.

16-bit PNGs are read by their real bit depth (`png_sample_bits`): many detectors store 10, 12 or
14-bit data in a 16-bit PNG (values 0-4095 for 12 bits), which read as v / 65535 would be a film
at 1/16 of its brightness. The rule, applied by every reader (`pipelines.decode.decode_image`
in the graph, hence training, evaluation and the SavedModel; `data check`; the portable
training's NumPy decoder):

* an ``sBIT`` chunk saying b significant bits, and no sample above 2**b - 1: the data is b-bit,
  read as v / (2**b - 1). When samples do exceed it, the file follows the PNG specification
  (samples scaled up to 16 bits) and is read as v / 65535;
* no ``sBIT``: the bit length of the largest sample (of the gray or colour channels, alpha not
  counted) rounded up to an even number of bits, at least 8 and at most 16: a largest value of
  4095 or 2000 reads as 12-bit (v / 4095), 40000 as 16-bit (v / 65535), 255 as 8-bit.

No TensorFlow import: `data check` uses it without loading TensorFlow.
"""

from __future__ import annotations

import io
import os
import struct
from typing import Optional

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_GIF_MAGICS = (b"GIF87a", b"GIF89a")
_BMP_MAGIC = b"BM"

#: Environment variable holding the pixel cap (width x height), read at each check.
MAX_PIXELS_ENV = "CXR_CASCADE_MAX_PIXELS"
#: Default pixel cap: 50 megapixels (the largest public chest X-rays are about 4300x3500, 15 MP).
DEFAULT_MAX_PIXELS = 50_000_000
#: Smallest accepted width and height.
MIN_SIDE = 2
#: Longer side over shorter side above which an image is warned about (chest films are near 1:1;
#: 4:1 leaves room for a lateral or a cropped film).
MAX_ASPECT = 4.0


def _sniff_format(head: bytes) -> Optional[str]:
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head.startswith(_GIF_MAGICS):
        return "gif"
    if head.startswith(_BMP_MAGIC):
        return "bmp"
    return None



def max_pixels() -> int:
    """The pixel cap: `CXR_CASCADE_MAX_PIXELS` when set (a positive integer), else 50 megapixels."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"{MAX_PIXELS_ENV} must be a positive number of pixels. Received: {MAX_PIXELS_ENV}={text!r}"
        )
    return value


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def read_header(data: bytes) -> Optional[tuple[str, int, int, int]]:
    """(format, width, height, channels) from a PNG's IHDR or a JPEG's frame header, else None.

    Reads only the header (the JPEG marker segments before the first frame header); `format` is
    "png", "jpeg", "gif", "bmp" (size 0 for the latter two, which are refused anyway) or None.
    PNG channels are 0 (not needed by the policy).
    """
    fmt = _sniff_format(data[:8])
    if fmt == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return fmt, width, height, 0
    if fmt != "jpeg":
        return (fmt, 0, 0, 0) if fmt else None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker in _SOF_MARKERS:
            if pos + 10 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return fmt, width, height, data[pos + 9]
        if marker == 0xDA or length < 2:  # scan data before any frame header: broken
            return None
        pos += 2 + length
    return None


def image_bytes_problem(data: bytes, cap: Optional[int] = None) -> Optional[str]:
    """Why `data` (a whole image file) is refused by the decode policy, or None when it is not.

    Header checks only (see the module docstring); a file that passes may still turn out corrupt
    when it is decoded.
    """
    if not data:
        return "empty file (0 bytes)"
    fmt = _sniff_format(data[:8])
    if fmt is None:
        return "not a PNG or JPEG file (unknown file signature)"
    if fmt in ("gif", "bmp"):
        return f"{fmt.upper()} image: only PNG and JPEG are read (convert it to PNG)"
    header = read_header(data)
    if header is None:
        return f"corrupt or truncated {fmt} image (no readable {'IHDR' if fmt == 'png' else 'frame'} header)"
    _, width, height, channels = header
    if fmt == "jpeg" and channels == 4:
        return "CMYK JPEG: not supported (no correct CMYK-to-gray conversion); convert it to grayscale"
    if min(width, height) < MIN_SIDE:
        return f"image is {width}x{height} pixels; each side must be at least {MIN_SIDE}"
    cap = max_pixels() if cap is None else cap
    if width * height > cap:
        return (
            f"image is {width}x{height} = {width * height / 1e6:.0f} megapixels, over the cap of "
            f"{cap / 1e6:g} megapixels (raise it with {MAX_PIXELS_ENV}=N)"
        )
    return None


def png_chunk(data: bytes, kind: bytes, before: tuple = (b"IEND",)) -> Optional[bytes]:
    """The payload of a PNG's first `kind` chunk, or None when there is none before a chunk of a
    type in `before`. Walks the chunk headers only (lengths; no CRC, no decompression)."""
    if not data.startswith(_PNG_MAGIC):
        return None
    pos = 8
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        found = data[pos + 4:pos + 8]
        if found == kind:
            return data[pos + 8:pos + 8 + length]
        if found in before:
            return None
        pos += 12 + length
    return None


def png_sbit(data: bytes) -> Optional[int]:
    """The significant bits an ``sBIT`` chunk gives a PNG's gray or colour samples (the largest
    of R, G, B for colour; alpha not counted), or None when there is no such chunk before the
    image data. Reads the chunk headers only."""
    if len(data) < 26:
        return None
    payload = png_chunk(data, b"sBIT", before=(b"IDAT", b"IEND"))
    values = (payload or b"")[: 3 if data[25] in (2, 6) else 1]
    return max(values) if values else None


#: EXIF orientation (tag 0x0112) -> what a viewer does to show the stored pixels upright.
ORIENTATIONS = {
    1: "upright", 2: "mirrored left-right", 3: "rotated 180 degrees", 4: "mirrored top-bottom",
    5: "transposed", 6: "rotated 90 degrees clockwise", 7: "transversed",
    8: "rotated 90 degrees counter-clockwise",
}


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) of a JPEG (APP1) or PNG (``eXIf`` chunk); 1 when there is none
    or it is unreadable. Reads the header only."""
    from PIL import Image  # lazy: the rest of this module needs no Pillow

    fmt = _sniff_format(data[:8])
    try:
        if fmt == "png":
            payload = png_chunk(data, b"eXIf")
            if payload is None:
                return 1
            exif = Image.Exif()
            exif.load(payload)
        elif fmt == "jpeg":
            with Image.open(io.BytesIO(data)) as image:
                exif = image.getexif()
        else:
            return 1
        value = int(exif.get(0x0112, 1))
    except Exception:  # a broken EXIF block is ignored, as viewers do
        return 1
    return value if value in ORIENTATIONS else 1


def png_sample_bits(max_value: int, sbit: Optional[int] = None) -> int:
    """The bit depth b a 16-bit PNG's samples are read with (v / (2**b - 1)); the rule of the
    module docstring. `max_value`: the largest gray or colour sample; `sbit`: `png_sbit`."""
    if sbit is not None and 1 <= sbit < 16:
        return sbit if max_value < (1 << sbit) else 16
    if sbit is not None:
        return 16
    bits = max(8, int(max_value).bit_length())
    return min(16, bits + bits % 2)


def shape_warning(data: bytes) -> Optional[str]:
    """A one-line warning for an image whose shape no chest film has (longer side over `MAX_ASPECT`
    times the shorter: a 2 x 40000 strip), or None. Such files are read (the policy does not
    refuse them), but a diagnosis of them is a diagnosis of a squeezed strip."""
    header = read_header(data)
    if header is None or min(header[1], header[2]) < 1:
        return None
    _, width, height, _ = header
    ratio = max(width, height) / min(width, height)
    if ratio <= MAX_ASPECT:
        return None
    return (f"image is {width}x{height} pixels (aspect {ratio:.0f}:1, over {MAX_ASPECT:g}:1): not the "
            "shape of a chest film; it is squeezed to a square, so the result is unreliable")
