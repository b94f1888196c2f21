"""The artifact store against oracles: a dict of what was put, brute-force filters, sha256."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from microtome.errors import MicrotomeError, NotFound
from microtome.store import ANY, Artifact, ArtifactKey, Store, param_hash

MODELS = ("toy", "tiny")
LAYERS = ("conv1", "block2")
TECHNIQUES = ("feature_vis", "deepdream")


def content(key: ArtifactKey, name: str) -> bytes:
    """Expected bytes of a file, derived from its key so any read-back can be checked."""
    return hashlib.sha256(f"{key}/{name}".encode()).digest() * 8


def fill(store: Store) -> dict[ArtifactKey, dict]:
    """Put a grid of artifacts; returns the oracle: key -> params."""
    oracle = {}
    for model in MODELS:
        for layer in LAYERS:
            for technique in TECHNIQUES:
                for unit in (None, 0, 1, 7):
                    params = {"steps": 16, "technique": technique, "seed": unit or 0}
                    key = ArtifactKey.for_params(model, layer, unit, technique, params)
                    files = {"image.png": content(key, "image.png"), "legend.json": b'{"shared": true}'}
                    store.put(key, params, files, {"unit": unit, "model": model})
                    oracle[key] = params
    return oracle


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "store") as s:
        yield s


def test_param_hash_canonical():
    a = param_hash({"steps": 512, "lr": 0.05, "transforms": ["jitter", "scale"], "nested": {"b": 1, "a": 2}})
    b = param_hash({"nested": {"a": 2, "b": 1}, "transforms": ["jitter", "scale"], "lr": 0.05, "steps": 512})
    assert a == b and len(a) == 16 and int(a, 16) >= 0
    canonical = '{"lr":0.05,"nested":{"a":2,"b":1},"steps":512,"transforms":["jitter","scale"]}'
    assert a == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert param_hash({"steps": 513}) != param_hash({"steps": 512})
    with pytest.raises(MicrotomeError, match="JSON"):
        param_hash({"x": float("nan")})
    with pytest.raises(MicrotomeError, match="JSON"):
        param_hash({"x": object()})


def test_key_validation():
    h = param_hash({})
    with pytest.raises(MicrotomeError, match="unit"):
        ArtifactKey("m", "l", -1, "t", h)
    with pytest.raises(MicrotomeError, match="unit"):
        ArtifactKey("m", "l", "3", "t", h)
    with pytest.raises(MicrotomeError, match="params_hash"):
        ArtifactKey("m", "l", 0, "t", "../../etc")
    with pytest.raises(MicrotomeError, match="layer"):
        ArtifactKey("m", "", 0, "t", h)


def test_put_get_round_trip(store: Store):
    params = {"steps": 8, "preset": "fast"}
    key = ArtifactKey.for_params("toy", "conv1", 3, "feature_vis", params)
    assert store.get(key) is None and not store.has(key)
    files = {"image.png": b"\x89PNG fake", "curve.json": b"[1, 2, 3]"}
    put = store.put(key, params, files, {"top_activation": 2.5})
    got = store.get(key)
    assert isinstance(got, Artifact) and got == put and store.has(key)
    assert got.params == params and got.meta == {"top_activation": 2.5}
    assert {n: store.read(sha) for n, sha in got.files.items()} == files
    assert got.files["image.png"] == hashlib.sha256(files["image.png"]).hexdigest()
    assert store.read_file(got, "curve.json") == b"[1, 2, 3]"
    with pytest.raises(NotFound, match="image.png"):
        store.read_file(got, "image.pgn")
    # a second put of the same key returns the first artifact and rewrites nothing
    again = store.put(key, params, {"image.png": b"other"}, {"top_activation": 9.0})
    assert again == put and store.verify().orphans == []
    # a reopened store (another process would do the same) sees it
    assert Store(store.root, create=False).get(key) == put
    with pytest.raises(MicrotomeError, match="hash"):
        store.put(key, {"steps": 9, "preset": "fast"}, files, {})


def test_blobs_content_addressed(store: Store):
    oracle = fill(store)
    on_disk = [p for p in (store.root / "blobs").rglob("*") if p.is_file()]
    # one image per artifact plus one shared legend stored once
    assert len(on_disk) == len(oracle) + 1
    for path in on_disk:
        data = path.read_bytes()
        assert path.parent.name + path.name == hashlib.sha256(data).hexdigest()
    report = store.verify()
    assert report.ok and report.checked == len(on_disk) and not report.orphans and not report.strays


def test_find_filters_match_brute_force(store: Store):
    oracle = fill(store)
    for model in (None, *MODELS):
        for layer in (None, "conv1"):
            for unit in (ANY, None, 7, 99):
                for technique in (None, "deepdream"):
                    expected = {
                        k for k in oracle
                        if (model is None or k.model == model) and (layer is None or k.layer == layer)
                        and (unit is ANY or k.unit == unit) and (technique is None or k.technique == technique)
                    }
                    found = store.find(model=model, layer=layer, unit=unit, technique=technique)
                    assert [a.key for a in found] == sorted(expected, key=lambda k: (
                        k.model, k.layer, -1 if k.unit is None else k.unit, k.technique, k.params_hash))
                    assert all(a.params == oracle[a.key] for a in found)
    counts: dict = {}
    for k in oracle:
        counts[(k.model, k.layer, k.technique)] = counts.get((k.model, k.layer, k.technique), 0) + 1
    assert store.stats() == counts
    with pytest.raises(MicrotomeError, match="unit"):
        store.find(unit="seven")
    assert store.stats("tiny") == {c: n for c, n in counts.items() if c[0] == "tiny"}


def test_models_round_trip(store: Store):
    summary = {"title": "Toy CNN", "trained": False, "layers": [{"name": "conv1", "channels": 8}],
               "edges": [["conv1", "block2"]]}
    store.put_model("toy", summary)
    store.put_model("alpha", {"title": "A"})
    assert store.model("toy") == summary and store.model("nope") is None
    assert list(store.models()) == ["alpha", "toy"]
    store.put_model("toy", {**summary, "trained": True})
    assert store.model("toy")["trained"] is True


def test_blob_path_rejects_bad_shas(store: Store):
    good = store.put(ArtifactKey.for_params("m", "l", 0, "t", {}), {}, {"f": b"x"}, {}).files["f"]
    assert store.blob_path(good).read_bytes() == b"x"
    for bad in ("../index.sqlite", "../" + good[3:], good.upper(), good[:-1], good + "0", "", "ab/" + good[3:],
                good[:2] + "/" + good[2:], good + "\n"):
        with pytest.raises(NotFound):
            store.blob_path(bad)
        with pytest.raises(NotFound):
            store.read(bad)
    with pytest.raises(NotFound):
        store.read("0" * 64)


def test_open_missing_store(tmp_path: Path):
    with pytest.raises(MicrotomeError, match="no store at"):
        Store(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()


def test_claims(store: Store):
    key = ArtifactKey.for_params("m", "l", 1, "t", {})
    assert store.claim(key, "a", ttl=0.2)
    assert not store.claim(key, "b") and store.claim(key, "a")  # renewal by the holder
    store.release(key, "a")
    assert store.claim(key, "b", ttl=0.05)
    time.sleep(0.06)
    assert store.claim(key, "a")  # b's claim expired
    store.put(key, {}, {"f": b"1"}, {})
    assert not store.claim(key, "a") and not store.claim(key, "b")  # stored: nobody computes it again


def test_threads_read_while_writing(store: Store):
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                for a in store.find(model="toy"):
                    assert store.read(a.files["image.png"]) == content(a.key, "image.png")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    oracle = fill(store)
    stop.set()
    for t in threads:
        t.join()
    assert not errors and len(store.find()) == len(oracle)


CLAIM_WRITER = r"""
import sys, time, hashlib
from pathlib import Path
from microtome.store import Store, ArtifactKey
root, owner, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = Store(root)
print("READY", flush=True)
while not (Path(root) / "go").exists():
    time.sleep(0.002)
for i in range(n):
    params = {"i": i}
    key = ArtifactKey.for_params("toy", "conv1", i, "feature_vis", params)
    if not store.claim(key, owner, ttl=30):
        continue
    print("COMPUTED", i, flush=True)
    time.sleep(0.003)  # the "computation"
    store.put(key, params, {"image.png": hashlib.sha256(str(key).encode()).digest() * 8,
                            "by.txt": owner.encode()}, {"owner": owner})
    store.release(key, owner)
print("DONE", flush=True)
"""


def test_concurrent_builds_never_compute_twice(tmp_path: Path):
    root, n = tmp_path / "store", 40
    store = Store(root)
    procs = {owner: subprocess.Popen([sys.executable, "-c", CLAIM_WRITER, str(root), owner, str(n)],
                                     stdout=subprocess.PIPE, text=True) for owner in ("a", "b")}
    for p in procs.values():
        assert p.stdout.readline().strip() == "READY"
    (root / "go").touch()
    computed = {}
    for owner, p in procs.items():
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0 and out.splitlines()[-1] == "DONE"
        computed[owner] = [int(line.split()[1]) for line in out.splitlines() if line.startswith("COMPUTED")]
    everything = computed["a"] + computed["b"]
    assert sorted(everything) == list(range(n))  # each key computed exactly once
    artifacts = store.find()
    assert len(artifacts) == n
    for a in artifacts:  # the stored artifact is the one its computing process wrote
        assert a.key.unit in computed[a.meta["owner"]]
        assert store.read_file(a, "by.txt") == a.meta["owner"].encode()
    report = store.verify()
    assert report.ok and not report.orphans and not report.temp_files


def test_pack_unpack_round_trip(store: Store, tmp_path: Path):
    oracle = fill(store)
    store.put_model("toy", {"title": "Toy"})
    store.claim(ArtifactKey.for_params("toy", "x", 0, "t", {}), "someone")
    for name in ("a.tar.gz", "a.tar"):
        archive = store.pack(tmp_path / name)
        copy = Store.unpack(archive, tmp_path / f"copy-{name}")
        assert [a.as_dict() for a in copy.find()] == [a.as_dict() for a in store.find()]
        assert len(copy.find()) == len(oracle)
        for a in copy.find():
            assert copy.read_file(a, "image.png") == content(a.key, "image.png")
        assert copy.models() == {"toy": {"title": "Toy"}}
        assert copy.claim(ArtifactKey.for_params("toy", "x", 0, "t", {}), "me")  # claims not carried over
        report = copy.verify()
        assert report.ok and not report.orphans and not report.temp_files
    with pytest.raises(MicrotomeError, match="not empty"):
        Store.unpack(tmp_path / "a.tar", tmp_path / "copy-a.tar")
    with pytest.raises(MicrotomeError, match=r"\.tar\.gz"):
        store.pack(tmp_path / "a.zip")


def _tar_with(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("evil", ["../evil", "blobs/../../evil", "/tmp/microtome-evil-abs", "notes.txt"])
def test_unpack_refuses_escaping_members(store: Store, tmp_path: Path, evil: str):
    good = store.pack(tmp_path / "good.tar")
    members = {}
    with tarfile.open(good) as tar:
        for m in tar.getmembers():
            members[m.name] = tar.extractfile(m).read()
    members[evil] = b"pwned"
    work = tmp_path / "work"
    work.mkdir()
    archive = _tar_with(tmp_path / "evil.tar.gz", members)
    before = set(tmp_path.rglob("*"))
    with pytest.raises(MicrotomeError, match="refusing"):
        Store.unpack(archive, work / "target")
    assert set(tmp_path.rglob("*")) == before  # nothing written anywhere, not even the target
    assert not os.path.exists("/tmp/microtome-evil-abs")


def test_unpack_refuses_links(tmp_path: Path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        index = tarfile.TarInfo("index.sqlite")
        tar.addfile(index, io.BytesIO(b""))
        link = tarfile.TarInfo("blobs/ab/" + "c" * 62)
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(MicrotomeError, match="link"):
        Store.unpack(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_unpack_refuses_corrupt_blob(store: Store, tmp_path: Path):
    fill(store)
    members = {}
    with tarfile.open(store.pack(tmp_path / "good.tar")) as tar:
        for m in tar.getmembers():
            members[m.name] = tar.extractfile(m).read()
    victim = next(n for n in members if n.startswith("blobs/"))
    members[victim] = b"bit rot"
    with pytest.raises(MicrotomeError, match="corrupt"):
        Store.unpack(_tar_with(tmp_path / "bad.tar.gz", members), tmp_path / "target")
    assert not (tmp_path / "target").exists()
