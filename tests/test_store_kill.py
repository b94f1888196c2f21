"""A writer SIGKILLed at any instant leaves a store that verifies, reads back right, and resumes.

The writer is a subprocess putting multi-file artifacts whose bytes derive from their key, so
every file read back can be checked. Kills land after random delays, and deterministically in
the two risky windows: between the blob writes and the index row, and inside a blob's fsync.
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from microtome.store import Store

N = 1500  # large enough that the random kills land before the writer finishes, even on an idle machine
FILES = ("image.png", "curve.json", "big.bin", "legend.json")

# Shared by the writer process and the test (the oracle): key of artifact i, bytes of its files.
ORACLE = r'''
import hashlib
from microtome.store import ArtifactKey

def key_of(i):
    params = {"i": i, "steps": 64}
    return ArtifactKey.for_params("toy", f"layer{i % 3}", None if i % 5 == 0 else i, "feature_vis", params), params

def payload(key, name):
    if name == "legend.json":
        return b'{"shared": "by every artifact"}'
    seed = hashlib.sha256(f"{key}/{name}".encode()).digest()
    return seed * (2048 if name == "big.bin" else 4)  # 64 KiB for big.bin
'''

WRITER = ORACLE + r'''
import os, stat, sys, time
from microtome.store import Store

root, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
FILES = ("image.png", "curve.json", "big.bin", "legend.json")
calls = {"commit": 0, "fsync": 0}
if mode == "before-index":  # stall between the blob writes and the row of the 3rd artifact
    original = Store._commit
    def stalled_commit(self, *args, **kwargs):
        calls["commit"] += 1
        if calls["commit"] == 3:
            print("BLOBS-WRITTEN", flush=True)
            time.sleep(60)
        return original(self, *args, **kwargs)
    Store._commit = stalled_commit
elif mode == "in-fsync":  # stall inside the fsync of the 6th blob temp file
    real_fsync = os.fsync
    def stalled_fsync(fd):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            calls["fsync"] += 1
            if calls["fsync"] == 6:
                print("IN-FSYNC", flush=True)
                time.sleep(60)
        real_fsync(fd)
    os.fsync = stalled_fsync
store = Store(root)
print("READY", flush=True)
wrote = 0
for i in range(n):
    key, params = key_of(i)
    if store.has(key):
        continue
    store.put(key, params, {name: payload(key, name) for name in FILES}, {"i": i})
    wrote += 1
print("DONE", wrote, flush=True)
'''

oracle: dict = {}
exec(ORACLE, oracle)
key_of, payload = oracle["key_of"], oracle["payload"]


def spawn(root: Path, mode: str = "plain") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(N), mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "READY"
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)  # reaped: its pid is dead, so gc may take its temp files
    proc.stdout.close()


def check_blobs_complete(root: Path) -> None:
    """Oracle for "no truncated blob": every file under blobs/ hashes to its own name."""
    for path in (root / "blobs").rglob("*"):
        if path.is_file():
            assert path.parent.name + path.name == hashlib.sha256(path.read_bytes()).hexdigest()


def check_artifacts(store: Store) -> int:
    """Every indexed artifact reads back exactly; returns how many there are."""
    expected = {key_of(i)[0]: i for i in range(N)}
    artifacts = store.find()
    for a in artifacts:
        assert a.key in expected and a.meta == {"i": expected[a.key]}
        assert {name: store.read(sha) for name, sha in a.files.items()} == {n: payload(a.key, n) for n in FILES}
    assert len({a.key for a in artifacts}) == len(artifacts)
    return len(artifacts)


@pytest.mark.slow
def kill_at_random(root, spawn, check, times: int, rng, delay: tuple[float, float]) -> None:
    """Start a writer `times` times and kill -9 it after a random delay; after each kill the
    store verifies, no blob is truncated, and `check(store)` holds."""
    for _ in range(times):
        proc = spawn(root)
        time.sleep(rng.uniform(*delay))
        kill(proc)
        check_blobs_complete(root)
        with Store(root, create=False) as store:
            assert store.verify().ok
            check(store)


def test_killed_writer_leaves_a_consistent_store(tmp_path: Path):
    root = tmp_path / "store"
    rng = random.Random(1234)
    # the two deterministic windows
    for mode, marker in (("in-fsync", "IN-FSYNC"), ("before-index", "BLOBS-WRITTEN")):
        proc = spawn(root, mode)
        assert proc.stdout.readline().strip() == marker
        kill(proc)
        check_blobs_complete(root)
    report = Store(root).verify()
    assert report.ok
    assert len(report.orphans) >= 3  # the 3rd artifact's own files, written but never indexed
    assert report.temp_files  # the temp file whose fsync was interrupted
    # kills at random moments of the write loop
    kill_at_random(root, spawn, check_artifacts, 6, rng, (0.01, 0.12))

    store = Store(root, create=False)
    report = store.verify()
    assert report.ok and not report.strays
    before = check_artifacts(store)
    assert 0 < before < N  # the kills interrupted the writer, but it made progress

    gc = store.gc()
    assert set(gc.orphans) == set(report.orphans) and len(gc.temp_files) == len(report.temp_files)
    after_gc = store.verify()
    assert after_gc.ok and not after_gc.orphans and not after_gc.temp_files
    assert check_artifacts(store) == before

    # a rerun skips what exists and completes the set, with no duplicates
    proc = spawn(root)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.split() == ["DONE", str(N - before)]
    assert check_artifacts(store) == N
    assert {a.key for a in store.find()} == {key_of(i)[0] for i in range(N)}
    final = store.verify()
    assert final.ok and final.checked == 3 * N + 1 and not final.orphans and not final.temp_files


# ---- batched writes: Store.put_many, one durability pass per batch ----------------------------

BATCH_N, BATCH = 3000, 40  # enough batches that random kills land mid-run on an idle machine
BATCH_ORACLE = ORACLE + r'''
def batch_payload(key, name, i):
    if name == "photo.png":  # shared by 7 neighbouring artifacts, across batch boundaries
        return hashlib.sha256(f"photo {i // 7}".encode()).digest() * 64
    return payload(key, name)
'''
BATCH_FILES = ("image.png", "big.bin", "legend.json", "photo.png")

BATCH_WRITER = BATCH_ORACLE + r'''
import os, sys, time
import microtome.store.blobs as blobs
from microtome.store import PutEntry, Store

root, n, size, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
FILES = ("image.png", "big.bin", "legend.json", "photo.png")
calls = {"n": 0}

def stall_at(count, marker):
    calls["n"] += 1
    if calls["n"] == count:
        print(marker, flush=True)
        time.sleep(60)

if mode == "in-sync":  # inside the 2nd batch's durability pass: temps written, none renamed
    real_syncfs = blobs._syncfs
    def stalled_syncfs(path):
        stall_at(3, "IN-SYNC")
        return real_syncfs(path)
    blobs._syncfs = stalled_syncfs
elif mode == "mid-rename":  # half way through the 2nd batch's renames
    real_replace = os.replace
    def stalled_replace(src, dst):
        stall_at(200, "MID-RENAME")
        return real_replace(src, dst)
    os.replace = stalled_replace
elif mode == "before-index":  # the 2nd batch's blobs all in place, its rows not inserted
    real_commit = Store._commit
    def stalled_commit(self, *args, **kwargs):
        stall_at(2, "BLOBS-WRITTEN")
        return real_commit(self, *args, **kwargs)
    Store._commit = stalled_commit
store = Store(root)
print("READY", flush=True)
wrote = 0
for start in range(0, n, size):
    todo = []
    for i in range(start, min(start + size, n)):
        key, params = key_of(i)
        if not store.has(key):
            todo.append(PutEntry(key, params, {f: batch_payload(key, f, i) for f in FILES}, {"i": i}))
    if todo:
        store.put_many(todo)
        wrote += len(todo)
print("DONE", wrote, flush=True)
'''

batch_oracle: dict = {}
exec(BATCH_ORACLE, batch_oracle)


def spawn_batched(root: Path, mode: str = "plain") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", BATCH_WRITER, str(root), str(BATCH_N), str(BATCH), mode],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "READY"
    return proc


def check_batched(store: Store) -> int:
    """Every indexed artifact reads back exactly, each key once; returns how many there are."""
    expected = {key_of(i)[0]: i for i in range(BATCH_N)}
    artifacts = store.find()
    for a in artifacts:
        i = expected[a.key]
        assert a.meta == {"i": i}
        got = {name: store.read(sha) for name, sha in a.files.items()}
        assert got == {n: batch_oracle["batch_payload"](a.key, n, i) for n in BATCH_FILES}
    assert len({a.key for a in artifacts}) == len(artifacts)
    return len(artifacts)


@pytest.mark.slow
def test_killed_batched_writer_leaves_a_consistent_store(tmp_path: Path):
    root = tmp_path / "store"
    stored = 0
    for mode, marker in (("in-sync", "IN-SYNC"), ("mid-rename", "MID-RENAME"),
                         ("before-index", "BLOBS-WRITTEN")):
        proc = spawn_batched(root, mode)
        assert proc.stdout.readline().strip() == marker
        kill(proc)
        check_blobs_complete(root)
        with Store(root, create=False) as store:
            report = store.verify()
            assert report.ok and not report.strays
            now = check_batched(store)
            assert now > stored and now % BATCH == 0  # whole batches: the stalled one got no row
            stored = now
            if mode != "in-sync":
                assert report.orphans  # the 2nd batch's blobs, renamed but not indexed
            if mode != "before-index":
                assert report.temp_files  # temps not renamed yet
    kill_at_random(root, spawn_batched, check_batched, 4, random.Random(99), (0.02, 0.3))
    store = Store(root, create=False)
    before = check_batched(store)
    assert BATCH <= before < BATCH_N
    proc = spawn_batched(root)  # the rerun: skips what exists, writes the rest once
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out.split() == ["DONE", str(BATCH_N - before)]
    assert check_batched(store) == BATCH_N
    distinct = {sha for a in store.find() for sha in a.files.values()}
    assert len(distinct) == 2 * BATCH_N + 1 + (BATCH_N + 6) // 7  # nothing missing, nothing doubled
    store.gc()
    final = store.verify()
    assert final.ok and final.checked == len(distinct) and not final.orphans and not final.temp_files
    on_disk = [p for p in (root / "blobs").rglob("*") if p.is_file()]
    assert len(on_disk) == len(distinct)
