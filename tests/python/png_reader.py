"""Reading back the PNG files lethe writes (tools/lethe/png_canvas.h): 8-bit RGB, filter 0
on every row, every chunk's CRC checked. The tests' own decoder, so that a picture is checked
by pixels and not by trusting the writer."""
import struct
import zlib

import numpy as np


def read_png(path):
    """(width, height, pixels [h, w, 3]) of an 8-bit RGB PNG with filter 0 on every row."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind}"
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    w, h, depth, color = header[:4]
    assert (depth, color) == (8, 2), header
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + 3 * w)
    assert (raw[:, 0] == 0).all()
    return w, h, raw[:, 1:].reshape(h, w, 3)
