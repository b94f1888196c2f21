"""Label agreement on `logits`: does unit k's best label from each source name class k?

    .venv/bin/python bench/label_agreement.py [--data ../shared/data/imagenet-sample] [--units 0-999]

Builds dataset examples and labels of efficientnet_lite0's logits over a labelled folder into
a temporary store, then, per source (`examples`: lift over the folder's classes; and
`predictions`, recomputed as if the folder had no labels), prints the fraction of units whose
best label of that source is class k itself or one of its WordNet ancestors ("cat" for
"tabby"), and the fraction where it is class k exactly. The `connections` source names class
k by construction for logits and is not counted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from microtome.pipeline.executors import Execution
from microtome.pipeline.pipeline import build
from microtome.store import Store
from microtome.zoo import get_spec
from microtome.zoo.imagenet import imagenet_hierarchy

ROOT = Path(__file__).resolve().parents[1]


def agreement(store: Store, labels: tuple[str, ...], source: str) -> tuple[float, float, int]:
    names, ancestors = imagenet_hierarchy()
    exact = related = total = 0
    for art in store.find(model="efficientnet_lite0", layer="logits", technique="labels"):
        k = art.key.unit
        best = next((e["label"] for e in art.meta["labels"] if e["source"] == source), None)
        total += 1
        if best is None:
            continue
        exact += best == labels[k]
        related += best == labels[k] or best in {names[a] for a in ancestors[k]}
    return exact / max(total, 1), related / max(total, 1), total


def run(data: str, units: str, unlabelled: bool) -> None:
    spec = get_spec("efficientnet_lite0")
    with tempfile.TemporaryDirectory() as tmp:
        dataset = f"folder:{data}"
        if unlabelled:  # the same photos without labels.tsv: labels come from predictions
            view = Path(tmp) / "photos"
            view.mkdir()
            for p in sorted(Path(data).glob("*.jpg")):
                (view / p.name).symlink_to(p.resolve())
            dataset = f"folder:{view}"
        store = Store(Path(tmp) / "store")
        started = time.perf_counter()
        summary = build(store, "efficientnet_lite0", layers="logits", units=units,
                        techniques="dataset_examples,labels", preset="standard", dataset=dataset,
                        execution=Execution(progress=True))
        seconds = time.perf_counter() - started
        source = "predictions" if unlabelled else "examples"
        exact, related, total = agreement(store, spec.labels, source)
        print(f"{source:11s} {total} logits units: best label is class k {exact:.1%}, class k or its "
              f"WordNet ancestor {related:.1%} (build {seconds:.0f} s, {summary.recorded} artifacts)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imagenet-sample"))
    ap.add_argument("--units", default="0-999")
    args = ap.parse_args()
    run(args.data, args.units, unlabelled=False)
    run(args.data, args.units, unlabelled=True)


if __name__ == "__main__":
    main()
