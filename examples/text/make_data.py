#!/usr/bin/env python3
"""Build examples/text/: Debian package short descriptions classified by archive section.

The source is the package index apt already keeps on every Debian machine (nothing is
downloaded): the `Packages` lists under /var/lib/apt/lists/ (plain or .lz4, read with the
`lz4` tool), or /var/lib/dpkg/status (installed packages only, far fewer), or any file in
that format given with --packages. Each package gives one example: its short description
(the first line of `Description:`), labelled by its `Section:` among SECTIONS.

Tokenisation is deliberately tiny: lower case, words are runs of [a-z0-9+#]; the VOCAB most
frequent words of the training split get ids 2, 3, ... (ties broken alphabetically), every
other word is 1 (unknown), and rows are cut or padded with 0 (padding_idx) to LENGTH ids.
Selection and the split are seeded, so the same index gives the same files.

    /usr/bin/python3 examples/text/make_data.py [--packages FILE] [--out examples/text]
"""

import argparse
import collections
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from export_torch import export_dataset  # noqa: E402

# Sections whose descriptions a reader can tell apart, and a cap per section (balance).
SECTIONS = ["games", "science", "sound", "graphics", "fonts", "mail", "editors", "database"]
PER_SECTION = 330
VOCAB = 2000     # words with their own embedding row (+ padding 0, unknown 1)
LENGTH = 12      # ids per description (short descriptions have ~6 words)
PADDING, UNKNOWN = 0, 1
DIM = 16         # embedding width in the spec
SEED = 0
FORGET_SEED = 1
TEST_ID_BASE = 100000
WORD = re.compile(r"[a-z0-9+#]+")


def default_sources():
    lists = sorted(glob.glob("/var/lib/apt/lists/*_main_binary-*_Packages*"))
    return lists or ["/var/lib/dpkg/status"]


def read_text(path):
    if path.endswith(".lz4"):
        return subprocess.run(["lz4", "-dc", path], check=True, capture_output=True).stdout.decode(
            "utf-8", "replace")
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def packages(paths):
    """{package name: (section, short description)}, first occurrence wins."""
    out = {}
    for path in paths:
        for stanza in read_text(path).split("\n\n"):
            fields = {}
            for line in stanza.split("\n"):
                if line and not line[0].isspace() and ":" in line:
                    key, _, value = line.partition(":")
                    fields[key] = value.strip()
            name, section, desc = fields.get("Package"), fields.get("Section"), fields.get("Description")
            if name and section and desc and name not in out:
                out[name] = (section.split("/")[-1], desc)  # "contrib/games" -> "games"
    return out


def tokens(text):
    return WORD.findall(text.lower())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", nargs="*", default=None,
                        help="Packages/status files (default: apt's lists, else dpkg's status)")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args()
    sources = args.packages or default_sources()
    index = packages(sources)

    rng = np.random.default_rng(SEED)
    texts, labels, names = [], [], []
    for label, section in enumerate(SECTIONS):
        members = sorted(n for n, (s, _) in index.items() if s == section)
        if len(members) > PER_SECTION:
            members = sorted(rng.choice(members, size=PER_SECTION, replace=False).tolist())
        for name in members:
            texts.append(index[name][1])
            labels.append(label)
            names.append(name)
    n = len(texts)
    if n == 0:
        sys.exit(f"no packages of sections {SECTIONS} in {sources}")
    order = rng.permutation(n)
    n_test = n // 5
    test, train = order[:n_test], order[n_test:]

    counts = collections.Counter(w for i in train for w in tokens(texts[i]))
    vocab = sorted(counts, key=lambda w: (-counts[w], w))[:VOCAB]
    word_id = {w: k + 2 for k, w in enumerate(vocab)}

    def encode(rows):
        X = np.full((len(rows), LENGTH), PADDING, dtype=np.int64)
        for r, i in enumerate(rows):
            ids = [word_id.get(w, UNKNOWN) for w in tokens(texts[i])][:LENGTH]
            X[r, :len(ids)] = ids
        return X

    y = np.asarray(labels, dtype=np.int64)
    os.makedirs(args.out, exist_ok=True)
    export_dataset(os.path.join(args.out, "train.npz"), encode(train), y[train], np.arange(len(train)),
                   token_ids=True)
    export_dataset(os.path.join(args.out, "test.npz"), encode(test), y[test],
                   TEST_ID_BASE + np.arange(len(test)), token_ids=True)
    with open(os.path.join(args.out, "vocab.txt"), "w") as f:
        f.write("<pad>\n<unk>\n" + "".join(w + "\n" for w in vocab))
    with open(os.path.join(args.out, "examples.tsv"), "w") as f:  # id, section, package, text
        f.write("id\tsection\tpackage\tdescription\n")
        for ids, rows in ((np.arange(len(train)), train), (TEST_ID_BASE + np.arange(len(test)), test)):
            for k, i in zip(ids, rows):
                f.write(f"{k}\t{SECTIONS[labels[i]]}\t{names[i]}\t{texts[i]}\n")
    num_embeddings = len(vocab) + 2
    spec = {
        "format": "lethe/1",
        "layers": [
            {"type": "embedding_bag", "weight": "0.weight", "num_embeddings": num_embeddings,
             "dim": DIM, "mode": "mean", "padding_idx": PADDING},
            {"type": "linear", "weight": "1.weight", "bias": "1.bias", "out": len(SECTIONS)},
        ],
        "loss": "cross_entropy",
        "l2": 1e-3,
    }
    with open(os.path.join(args.out, "bag.json"), "w") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    forget = np.sort(np.random.default_rng(FORGET_SEED).choice(len(train), size=max(1, len(train) // 100),
                                                               replace=False))
    with open(os.path.join(args.out, "forget.txt"), "w") as f:
        f.write(f"# {len(forget)} of the {len(train)} training ids (~1%), drawn by "
                f"numpy.random.default_rng({FORGET_SEED}); see examples.tsv for their text.\n")
        f.writelines(f"{i}\n" for i in forget)
    print(f"{len(train)} train / {len(test)} test descriptions, {num_embeddings} embedding rows, "
          f"sections {SECTIONS}, from {sources}")


if __name__ == "__main__":
    main()
