"""The real node's containerd root, cached with the images imported and copied as hard links."""

from __future__ import annotations

import os
from pathlib import Path

from devcluster.realnode import runtime


def cached_tree(cache: Path) -> Path:
    cached = cache / "key"
    layer = cached / "io.containerd.snapshotter.v1.overlayfs" / "snapshots" / "1" / "fs"
    (layer / "home" / "app").mkdir(parents=True)
    os.chown(layer / "home" / "app", 1000, 1000)
    (layer / "home" / "app" / "main.py").write_text("print('hello')")
    os.symlink("main.py", layer / "home" / "app" / "link.py")
    for name in runtime.DATABASES:
        (cached / name).parent.mkdir(parents=True, exist_ok=True)
        (cached / name).write_bytes(b"bolt")
    return cached


def test_a_seeded_root_links_the_layers_copies_the_databases_and_keeps_owners(tmp_path: Path) -> None:
    cached = cached_tree(tmp_path / "cache")
    state = tmp_path / "state"
    (state / "containerd").mkdir(parents=True)

    assert runtime.seed_root(state, cached)

    root = runtime.root(state)
    layer = root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots" / "1" / "fs"
    source = cached / layer.relative_to(root)
    assert (layer / "home" / "app" / "main.py").stat().st_ino == \
        (source / "home" / "app" / "main.py").stat().st_ino
    assert os.readlink(layer / "home" / "app" / "link.py") == "main.py"
    assert (layer / "home" / "app").stat().st_uid == 1000
    for name in runtime.DATABASES:
        assert (root / name).read_bytes() == b"bolt"
        assert (root / name).stat().st_ino != (cached / name).stat().st_ino
        (root / name).write_bytes(b"changed by containerd")
        assert (cached / name).read_bytes() == b"bolt"


def test_no_cache_seeds_nothing(tmp_path: Path) -> None:
    (tmp_path / "state" / "containerd").mkdir(parents=True)
    assert not runtime.seed_root(tmp_path / "state", tmp_path / "cache" / "key")
    assert not runtime.root(tmp_path / "state").exists()


def test_saving_a_root_moves_it_and_drops_the_roots_of_other_archives(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "old-key" / "io.containerd.metadata.v1.bolt").mkdir(parents=True)
    importer = tmp_path / "import"
    runtime.root(importer).mkdir(parents=True)
    (runtime.root(importer) / "marker").write_text("imported")

    runtime.save_root(importer, cache / "new-key")

    assert sorted(p.name for p in cache.iterdir()) == ["new-key"]
    assert (cache / "new-key" / "marker").read_text() == "imported"
    assert not runtime.root(importer).exists()


def test_the_key_follows_the_archives(tmp_path: Path) -> None:
    one = runtime.cached_root(tmp_path, [Path("worker-0.1.0-aaa.tar"), Path("pause-bbb.tar")])
    same = runtime.cached_root(tmp_path, [Path("/elsewhere/worker-0.1.0-aaa.tar"),
                                          Path("pause-bbb.tar")])
    other = runtime.cached_root(tmp_path, [Path("worker-0.1.0-ccc.tar"), Path("pause-bbb.tar")])
    assert one == same != other
    assert one.parent == tmp_path
