#!/usr/bin/env python3
"""Writes the seed corpora and dictionaries of tests/fuzz/ (run from anywhere; needs numpy).

    /usr/bin/python3 tests/fuzz/make_corpus.py

Seeds are small valid files (from examples/ and tests/io/data/, or built here) plus the
reproducers of issue 13 kept small enough to commit. Every file in corpus/NAME/ is also a
regression test: ctest runs it through fuzz_replay_NAME in every build.
"""
import io
import json
import os
import shutil
import struct
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def put(fuzzer, name, data):
    d = os.path.join(CORPUS, fuzzer)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def safetensors(header, data=b""):
    text = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    text = text.encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def npy(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def npz(compressed=False, **arrays):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    spec = {"format": "lethe/1", "loss": "cross_entropy", "l2": 0.001,
            "layers": [{"type": "linear", "weight": "0.weight", "bias": "0.bias", "out": 3},
                       {"type": "tanh"}, {"type": "linear", "weight": "2.weight", "out": 2}]}
    w0, b0, w2 = np.arange(12.0).reshape(3, 4) / 10, np.ones(3), np.arange(6.0).reshape(2, 3)
    data = b"".join(a.astype("<f4").tobytes() for a in (w0, b0, w2))
    header = {"__metadata__": {"format": "pt", "lethe": json.dumps(spec)},
              "0.weight": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]},
              "0.bias": {"dtype": "F32", "shape": [3], "data_offsets": [48, 60]},
              "2.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [60, 84]}}
    put("safetensors", "mlp.safetensors", safetensors(header, data))
    deep = "[" * 66000 + "]" * 66000
    put("safetensors", "repro_deep_dtype.safetensors",
        safetensors('{"w": {"dtype": ' + deep + ', "shape": [1], "data_offsets": [0, 4]}}', bytes(4)))
    put("safetensors", "repro_deep_shape.safetensors",
        safetensors('{"w": {"dtype": "F32", "shape": ' + deep + ', "data_offsets": [0, 4]}}', bytes(4)))
    put("safetensors", "repro_forged_name.safetensors",
        safetensors({"w\nlethe eval: loss 0.0\x1b[2J\x00": {"dtype": "F32", "shape": [1],
                                                             "data_offsets": [0, 4]}}, bytes(4)))
    wide = dict(spec, layers=[dict(spec["layers"][0], out=2**62), {"type": "tanh"},
                              spec["layers"][2]])
    put("safetensors", "repro_out_2_62.safetensors",
        safetensors(dict(header, __metadata__={"lethe": json.dumps(wide)}), data))

    X = np.arange(12.0).reshape(4, 3)
    y = np.array([0, 1, 1, 0])
    put("npz", "savez.npz", npz(X=X, y=y, ids=np.arange(4) + 10))
    put("npz", "compressed.npz", npz(True, X=X.astype(np.float32), y=y))
    put("npz", "repro_label_int64_max.npz", npz(X=X, y=np.array([0, 1, 2**63 - 1, 0])))
    put("npz", "repro_label_1e300.npz", npz(X=X, y=np.array([0, 1, 1e300, 0])))
    for name in ("savez.npz", "big_compressed.npz"):
        with open(os.path.join(ROOT, "tests", "io", "data", name), "rb") as f:
            put("npz", "io_" + name, f.read())
            f.seek(0)
            put("zip", "io_" + name, f.read())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.npy", npy(X))
        zf.writestr("b\n\x1b.npy", npy(y))
    put("zip", "deflated.zip", buf.getvalue())
    put("npz", "repro_forged_member.npz", buf.getvalue())

    for name in sorted(os.listdir(os.path.join(ROOT, "tests", "io", "data"))):
        if name.endswith(".npy"):
            with open(os.path.join(ROOT, "tests", "io", "data", name), "rb") as f:
                put("npy", name, f.read())
    put("npy", "f8_2d.npy", npy(X))
    put("npy", "i8.npy", npy(y))

    put("csv", "plain.csv", "a,b,label\n1,2,0\n3.5,-4e3,1\n")
    put("csv", "quoted.csv", 'a,"b,c",label\r\n"1",2,1\r\n3,"4",0\r\n\r\n')
    put("csv", "pandas_index.csv", ",a,label\n0,1.5,0\n1,2.5,1\n")
    put("csv", "repro_label_1e300.csv", "a,label\n1,0\n2,1e300\n")
    put("csv", "repro_commas.csv", "a,label\n" + "," * 100000 + "\n")
    put("csv", "repro_forged_field.csv", 'a,label\n"1\nlethe eval: loss 0.0\x1b[2J",0\n')

    for path in ("digits/softmax.json", "digits/mlp.json", "breast_cancer/logistic.json"):
        with open(os.path.join(ROOT, "examples", path), "rb") as f:
            put("spec", os.path.basename(path), f.read())
        for field in ("forget.txt",):
            with open(os.path.join(ROOT, "examples", os.path.dirname(path), field), "rb") as f:
                put("ids", os.path.dirname(path) + "_" + field, f.read())
    put("spec", "repro_out_2_62.json", json.dumps(wide))
    put("spec", "repro_out_1e12_twice.json",
        json.dumps(dict(spec, layers=[dict(spec["layers"][0], out=10**12), {"type": "relu"},
                                      dict(spec["layers"][2], out=10**12)])))
    put("spec", "repro_deep.json", '{"format": "lethe/1", "layers": ' + deep + "}")
    put("ids", "comments.txt", "# forget\n3\n 17 # why\n\n-4\n")
    put("ids", "list.txt", "3, 17,42")

    # The ledger: the example's one-line ledger, a two-line chain built from it (the second
    # line deliberately unhashed: the reader must stop there), a half line, a forged line.
    with open(os.path.join(ROOT, "examples", "digits", "ledger.jsonl"), "rb") as f:
        ledger = f.read()
    put("ledger", "digits_ledger.jsonl", ledger)
    put("ledger", "half_line.jsonl", ledger + ledger[: len(ledger) // 2])
    put("ledger", "two_lines.jsonl", ledger + ledger.replace(b'"seq":1', b'"seq":2'))
    put("ledger", "forged_newline.jsonl", b'{"lethe_ledger":1,"seq":1,"child":{"path":"a\\nlethe: ok"}}\n')

    dictionaries = {
        "safetensors": ['"dtype"', '"shape"', '"data_offsets"', '"__metadata__"', '"lethe"',
                        '"F32"', '"F64"', '"BF16"', '"I64"', '"format"', '"lethe/1"', '"layers"',
                        '"linear"', '"out"', '"weight"', '"bias"', '"loss"', '"cross_entropy"'],
        "spec": ['"format"', '"lethe/1"', '"layers"', '"type"', '"linear"', '"tanh"', '"relu"',
                 '"weight"', '"bias"', '"out"', '"loss"', '"cross_entropy"', '"logistic"',
                 '"mse"', '"l2"', '"4611686018427387904"'],
        "npy": ['"\\x93NUMPY"', '"\'descr\'"', '"\'fortran_order\'"', '"\'shape\'"', '"True"',
                '"False"', '"<f8"', '"<f4"', '"<i8"', '"|b1"'],
        "zip": ['"PK\\x03\\x04"', '"PK\\x01\\x02"', '"PK\\x05\\x06"', '"PK\\x06\\x06"',
                '"PK\\x06\\x07"', '"\\x01\\x00"', '".npy"'],
        "csv": ['","', '"\\""', '"\\x0d\\x0a"', '"label"', '"1e300"', '"nan"', '"Unnamed: 0"'],
        "ids": ['"#"', '","', '"-"', '"9223372036854775807"'],
        "ledger": ['"lethe_ledger"', '"seq"', '"utc"', '"child"', '"parent"', '"path"',
                   '"sha256"', '"hash"', '"prev"', '"request"', '"ids"', '"k"', '"method"',
                   '"solver"', '"certificate"', '"beta"', '"epsilon_spent"', '"epsilon_budget"',
                   '"delta"', '"sigma"', '"newton"', '"\\x0a"'],
    }
    dictionaries["npz"] = dictionaries["zip"] + dictionaries["npy"] + ['"X.npy"', '"y.npy"',
                                                                       '"ids.npy"']
    for name, words in dictionaries.items():
        with open(os.path.join(HERE, f"{name}.dict"), "w") as f:
            f.write("".join(f"{w}\n" for w in words))


if __name__ == "__main__":
    main()
