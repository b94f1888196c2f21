"""Make `microtome/zoo/imagenet_hierarchy.json`: every ImageNet class's WordNet ancestors.

Run once by a developer (not at run time, not in tests):
    python scripts/imagenet_hierarchy.py WORDNET_DIR LABELS_TSV
with WORDNET_DIR = Debian's wordnet-base (/usr/share/wordnet, WordNet 3.0: `data.noun`) and a
labels.tsv giving each class index its WordNet id (`wnid`, `class_index` columns, e.g.
../shared/data/imagenet-sample/labels.tsv). The table: `nodes` (wnid, name: the synset's
first lemma) and per class index the node indices of all its hypernyms (`@` and `@i`
pointers, transitively), leaving out nodes above more than MAX_SHARE of the classes
("entity", "object", "device", ...) or fewer than MIN_DEPTH steps below WordNet's root
("abstraction", "matter"): too broad to say anything of a unit.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

MAX_SHARE = 0.15
MIN_DEPTH = 5  # hypernym steps below "entity": "abstraction", "matter", "part"... are above it
OUT = Path(__file__).resolve().parents[1] / "microtome" / "zoo" / "imagenet_hierarchy.json"


def read_nouns(path: Path) -> dict[int, tuple[str, list[int]]]:
    """{offset: (first lemma, hypernym offsets)} from WordNet's data.noun."""
    nouns = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):  # licence header
            continue
        fields = line.split(" ")
        offset, words = int(fields[0]), int(fields[3], 16)
        lemma = fields[4].replace("_", " ")
        at = 4 + 2 * words
        pointers = int(fields[at])
        hypernyms = [int(fields[at + 1 + 4 * i + 1]) for i in range(pointers)
                     if fields[at + 1 + 4 * i] in ("@", "@i") and fields[at + 1 + 4 * i + 2] == "n"]
        nouns[offset] = (lemma, hypernyms)
    return nouns


def ancestors(offset: int, nouns: dict) -> set[int]:
    seen, todo = set(), list(nouns[offset][1])
    while todo:
        o = todo.pop()
        if o not in seen:
            seen.add(o)
            todo.extend(nouns[o][1])
    return seen


def depth(offset: int, nouns: dict, memo: dict[int, int]) -> int:
    """The fewest hypernym steps from `offset` up to a root."""
    if offset not in memo:
        parents = nouns[offset][1]
        memo[offset] = 0 if not parents else 1 + min(depth(p, nouns, memo) for p in parents)
    return memo[offset]


def main(wordnet_dir: str, labels_tsv: str) -> None:
    nouns = read_nouns(Path(wordnet_dir) / "data.noun")
    with open(labels_tsv, newline="") as fh:
        wnids = {int(r["class_index"]): r["wnid"] for r in csv.DictReader(fh, delimiter="\t")}
    classes = [ancestors(int(wnids[i][1:]), nouns) for i in range(len(wnids))]
    share: dict[int, int] = {}
    for found in classes:
        for o in found:
            share[o] = share.get(o, 0) + 1
    memo: dict[int, int] = {}
    kept = sorted(o for o, n in share.items()
                  if 1 < n <= MAX_SHARE * len(classes) and depth(o, nouns, memo) >= MIN_DEPTH)
    index = {o: i for i, o in enumerate(kept)}
    table = {"source": "WordNet 3.0 (Debian wordnet-base), hypernyms of the ILSVRC-2012 classes",
             "nodes": [{"wnid": f"n{o:08d}", "name": nouns[o][0]} for o in kept],
             "classes": [{"wnid": wnids[i], "ancestors": sorted(index[o] for o in classes[i] if o in index)}
                         for i in range(len(wnids))]}
    OUT.write_text(json.dumps(table, separators=(",", ":")))
    print(f"{OUT}: {len(kept)} nodes for {len(classes)} classes")


if __name__ == "__main__":
    main(*sys.argv[1:3])
