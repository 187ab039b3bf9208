#!/usr/bin/env python3
"""Runs the reproducers of issue 13 through a lethe binary and reports, for each, the exit
code, the number of stderr lines, the stderr line's length, wall time and peak memory
(/usr/bin/time -v, "Maximum resident set size"). The figures are in docs/security.md.

    /usr/bin/python3 scripts/measure_hostile.py --lethe build/tools/lethe
"""
import argparse
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIGITS = os.path.join(ROOT, "examples", "digits")
T1 = ("--threads", "1")


def safetensors(header, data=b""):
    text = (header if isinstance(header, str) else json.dumps(header)).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def npy(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def npz(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def local_header(name, method, crc, csize, usize, extra=b""):
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, csize, usize,
                       len(name), len(extra)) + name + extra


def central_header(name, method, crc, csize, usize, offset):
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, csize,
                       usize, len(name), 0, 0, 0, 0, 0, offset) + name


def end_record(count, cd_size, cd_offset):
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_offset, 0)


def zip_members(members):
    """[(name, data, method)] -> archive bytes (method 8: deflated)."""
    out, central = b"", b""
    for name, data, method in members:
        packed = data
        if method == 8:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            packed = c.compress(data) + c.flush()
        offset = len(out)
        out += local_header(name.encode(), method, zlib.crc32(data), len(packed), len(data)) + packed
        central += central_header(name.encode(), method, zlib.crc32(data), len(packed), len(data),
                                  offset)
    return out + central + end_record(len(members), len(central), len(out))


def overlapping_members(count, payload):
    """`count` stored members whose local headers hide the others in their extra field, so
    that every member's data are the same payload."""
    names = [f"m{i}.npy".encode() for i in range(count)]
    sizes = [30 + len(n) for n in names]
    out, offsets = b"", []
    crc = zlib.crc32(payload)
    for i, name in enumerate(names):
        offsets.append(len(out))
        extra_len = sum(sizes[i + 1:])
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, crc, len(payload),
                           len(payload), len(name), extra_len) + name
    out += payload
    central = b"".join(central_header(n, 0, crc, len(payload), len(payload), o)
                       for n, o in zip(names, offsets))
    return out + central + end_record(count, len(central), len(out))


def deflated_zeros_member(name, size, noise_per_mib=0):
    """A one-member archive: NAME, an npy of float64 zeros of about `size` bytes, deflated
    at level 9 (deflate's ~1000x), streamed so that nothing of `size` is ever held.
    `noise_per_mib` random bytes at the start of every MiB lower the ratio at will."""
    rows = size // 8 // 64
    head = npy(np.zeros((0, 64)))
    head = head.replace(b"(0, 64)", f"({rows}, 64)".encode()).replace(b" " * (len(str(rows)) - 1) + b"\n", b"\n", 1)
    assert len(head) % 64 == 0, len(head)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed, crc = [comp.compress(head)], zlib.crc32(head)
    chunk = bytearray(1 << 20)
    rng = np.random.default_rng(0)
    left = rows * 64 * 8
    while left:
        chunk[:noise_per_mib] = rng.integers(0, 256, noise_per_mib, dtype=np.uint8).tobytes()
        part = bytes(chunk[:min(left, len(chunk))])
        packed.append(comp.compress(part))
        crc = zlib.crc32(part, crc)
        left -= len(part)
    packed.append(comp.flush())
    packed = b"".join(packed)
    usize = len(head) + rows * 64 * 8
    out = local_header(name, 8, crc, len(packed), usize) + packed
    central = central_header(name, 8, crc, len(packed), usize, 0)
    return out + central + end_record(1, len(central), len(out))


def reproducers():
    with np.load(os.path.join(DIGITS, "train.npz")) as z:
        X, y, ids = z["X"], z["y"], z["ids"]
    softmax = {"format": "lethe/1", "loss": "cross_entropy", "l2": 0.001,
               "layers": [{"type": "linear", "weight": "0.weight", "bias": "0.bias", "out": 10}]}
    model = safetensors({"__metadata__": {"lethe": json.dumps(softmax)},
                         "0.weight": {"dtype": "F64", "shape": [10, 64], "data_offsets": [0, 5120]},
                         "0.bias": {"dtype": "F64", "shape": [10], "data_offsets": [5120, 5200]}},
                        np.zeros(650).tobytes())
    deep = "[" * 66000 + "]" * 66000
    # A spec without "out": the labels decide the class count.
    train = lambda data: ["train", "--spec", "free.json", "--data", data, "--out", "out.safetensors", *T1]
    evaluate = lambda data: ["eval", "--model", "model.safetensors", "--data", data, *T1]
    inspect = lambda m: ["inspect", m]

    def labels(value, dtype=np.float64):
        bad = y.astype(dtype)
        bad[3] = value
        return npz(X=X, y=bad, ids=ids)

    nested_header = '{"x": {"dtype": "F64", "shape": [' + ",".join(["[[[[]]]]"] * 4_500_000) + \
        '], "data_offsets": [0, 0]}}'
    # 1 GiB of X in ~1.3 MB: within the per-member ratio (1024x), over the total (256x).
    bomb = deflated_zeros_member(b"X.npy", 1 << 30, noise_per_mib=256)
    # 1 GiB in ~5 MB (within both budgets) whose stream breaks 10% of the way in.
    corrupt = bytearray(deflated_zeros_member(b"X.npy", 1 << 30, noise_per_mib=4096))
    corrupt[len(corrupt) // 10:len(corrupt) // 10 + 1000] = os.urandom(1000)
    return [
        ("baseline: eval digits (legitimate)", {"model.safetensors": model}, evaluate("train.npz")),
        ("1. dtype nested 66,000 deep (130 KB)",
         {"bad.safetensors": safetensors('{"w": {"dtype": ' + deep + ', "shape": [1], "data_offsets": [0, 8]}}',
                                         bytes(8))}, inspect("bad.safetensors")),
        ("1. shape nested 66,000 deep",
         {"bad.safetensors": safetensors('{"w": {"dtype": "F64", "shape": ' + deep + ', "data_offsets": [0, 8]}}',
                                         bytes(8))}, inspect("bad.safetensors")),
        ('2. spec "out": 2^62',
         {"big.json": json.dumps(dict(softmax, layers=[dict(softmax["layers"][0], out=2**62)]))},
         ["train", "--spec", "big.json", "--data", "train.npz", "--out", "out.safetensors", *T1]),
        ('2. spec "out": 10^12 on two layers',
         {"big.json": json.dumps(dict(softmax, layers=[{"type": "linear", "weight": "a", "out": 10**12},
                                                      {"type": "tanh"},
                                                      {"type": "linear", "weight": "b", "out": 10**12}]))},
         ["train", "--spec", "big.json", "--data", "train.npz", "--out", "out.safetensors", *T1]),
        ("2. label 2^62 (width from labels)", {"bad.npz": labels(2**62, np.int64)}, train("bad.npz")),
        ("3. label int64 max (.npz), train", {"bad.npz": labels(2**63 - 1, np.int64)}, train("bad.npz")),
        ("3. label int64 max (.npz), eval", {"model.safetensors": model, "bad.npz": labels(2**63 - 1, np.int64)},
         evaluate("bad.npz")),
        ("3. label 1e300 (CSV)", {"bad.csv": "a,label\n1,0\n2,1e300\n",
                                  "one.json": json.dumps(dict(softmax, layers=[{"type": "linear", "weight": "w"}]))},
         ["train", "--spec", "one.json", "--data", "bad.csv", "--out", "out.safetensors", *T1]),
        ("3. label 1.5", {"bad.npz": labels(1.5)}, train("bad.npz")),
        ("4. label 10^7", {"bad.npz": labels(10**7, np.int64)}, train("bad.npz")),
        ("4. label 10^5", {"bad.npz": labels(10**5, np.int64)}, train("bad.npz")),
        ("4. label 3*10^9", {"bad.npz": labels(3 * 10**9, np.int64)}, train("bad.npz")),
        ("5. 250 members over one 4 MiB payload",
         {"bad.npz": overlapping_members(250, npy(np.zeros((8192, 64)))), "model.safetensors": model},
         evaluate("bad.npz")),
        ("5. 1,000 members over one 4 MiB payload",
         {"bad.npz": overlapping_members(1000, npy(np.zeros((8192, 64)))), "model.safetensors": model},
         evaluate("bad.npz")),
        ("5. deflate bomb: X declares 1 GiB in 1 MB", {"bad.npz": bomb, "model.safetensors": model},
         evaluate("bad.npz")),
        ("5. corrupt deflate stream declaring 1 GiB", {"bad.npz": bytes(corrupt),
                                                       "model.safetensors": model}, evaluate("bad.npz")),
        ("6. 40 MB header of nested arrays", {"bad.safetensors": safetensors(nested_header)},
         inspect("bad.safetensors")),
        ("7. tensor name with a forged line and ESC[2J",
         {"bad.safetensors": safetensors({"__metadata__": {"lethe": json.dumps(softmax)},
             "0.weight": {"dtype": "F64", "shape": [10, 64], "data_offsets": [0, 5120]},
             "0.bias": {"dtype": "F64", "shape": [10], "data_offsets": [5120, 5200]},
             "x\nlethe eval: loss 0.0 accuracy 1.0\n\x1b[2J": {
             "dtype": "F64", "shape": [1], "data_offsets": [5200, 5208]}}, bytes(5208))},
         inspect("bad.safetensors")),
        ("7. 50 MB tensor name",
         {"bad.safetensors": safetensors({"x" * 50_000_000: {"dtype": "F64", "shape": [2],
                                                             "data_offsets": [0, 8]}}, bytes(8))},
         inspect("bad.safetensors")),
        ("8. 10 MB CSV row of commas", {"bad.csv": "a,label\n" + "," * 10_000_000 + "\n"},
         train("bad.csv")),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lethe", required=True)
    args = parser.parse_args()
    lethe = os.path.abspath(args.lethe)
    cases = reproducers()
    print(f"| reproducer | exit | stderr lines | line bytes | wall s | peak RSS MB |")
    print(f"|---|---|---|---|---|---|")
    for label, files, cmd in cases:
        with tempfile.TemporaryDirectory(prefix="lethe_measure_") as d:
            for name in ("train.npz", "softmax.json"):
                shutil.copy(os.path.join(DIGITS, name), os.path.join(d, name))
            with open(os.path.join(d, "free.json"), "w") as f:
                json.dump({"format": "lethe/1", "loss": "cross_entropy",
                           "layers": [{"type": "linear", "weight": "w", "bias": "b"}]}, f)
            for name, content in files.items():
                with open(os.path.join(d, name), "wb") as f:
                    f.write(content.encode() if isinstance(content, str) else content)
            proc = subprocess.run(["/usr/bin/time", "-v", lethe, *cmd], cwd=d, capture_output=True,
                                  timeout=600)
            err = proc.stderr.decode("utf-8", "backslashreplace")
            report, _, timing = err.partition("\tCommand being timed")
            report = "".join(l for l in report.splitlines(True)
                             if not l.startswith("Command exited with non-zero status"))
            rss = int(next(l for l in timing.splitlines() if "Maximum resident" in l).split()[-1])
            wall = next(l for l in timing.splitlines() if "Elapsed (wall" in l).split()[-1]
            lines = report.count("\n")
            print(f"| {label} | {proc.returncode} | {lines} | {len(report.rstrip())} | {wall} | "
                  f"{rss / 1024:.0f} |")
            if proc.returncode:
                print(f"{label}: {report.strip()[:200]}", file=sys.stderr)


if __name__ == "__main__":
    main()
