"""Archive safety: hostile tar members are refused in one line, a bomb before it is expanded, and a safe archive
passes with its expanded size."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacheport.errors import MountError
from cacheport.mounts.archive import check, digest_of
from cacheport.oci.format import sha256_digest


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", linkname: str = "",
           size: int | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if size is None else size
    return info, data


def archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with gzip.open(path, "wb") as gz, tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def test_a_safe_archive_passes_with_its_expanded_size(tmp_path: Path) -> None:
    path = archive(tmp_path / "a.tar.gz", [
        member("./", tarfile.DIRTYPE), member("wheels", tarfile.DIRTYPE), member("wheels/a.whl", data=b"x" * 1000),
        member("wheels/b.whl", data=b"y" * 24), member("latest", tarfile.SYMTYPE, linkname="wheels/a.whl"),
        member("up", tarfile.SYMTYPE, linkname="wheels/../wheels"), member("hard", tarfile.LNKTYPE,
                                                                           linkname="wheels/b.whl"),
    ])
    assert check(path, limit=10_000) == 1024


@pytest.mark.parametrize(("members", "words"), [
    ([member("../evil", data=b"x")], "points outside the mount"),
    ([member("a/../../evil", data=b"x")], "points outside the mount"),
    ([member("/etc/passwd", data=b"x")], "absolute path"),
    ([member("dev", tarfile.CHRTYPE)], "device file"),
    ([member("disk", tarfile.BLKTYPE)], "device file"),
    ([member("pipe", tarfile.FIFOTYPE)], "FIFO"),
    ([member("out", tarfile.SYMTYPE, linkname="/etc/passwd")], "absolute path"),
    ([member("out", tarfile.SYMTYPE, linkname="../../etc")], "points outside the mount"),
    ([member("d/out", tarfile.SYMTYPE, linkname="../..")], "points outside the mount"),
    ([member("h", tarfile.LNKTYPE, linkname="/etc/shadow")], "absolute path"),
    ([member("h", tarfile.LNKTYPE, linkname="../x")], "points outside the mount"),
    ([member("h", tarfile.LNKTYPE, linkname="not-there")], "does not hold before it"),
    # a symlink to "." is inside, but a symlink to ".." through it is not: nothing goes through a symlink
    ([member("here", tarfile.SYMTYPE, linkname="."), member("here/x", tarfile.SYMTYPE, linkname="..")],
     "through a symlink"),
    ([member("l", tarfile.SYMTYPE, linkname="sub"), member("l/file", data=b"x")], "through a symlink"),
    # each target stays inside on its own, but resolved through the other symlink it leaves
    ([member("a", tarfile.SYMTYPE, linkname="."), member("b", tarfile.SYMTYPE, linkname="a/..")],
     "by way of other symlinks"),
    ([member("out", tarfile.SYMTYPE, linkname="d/up/.."), member("d", tarfile.DIRTYPE),
      member("d/up", tarfile.SYMTYPE, linkname="..")], "by way of other symlinks"),
    ([member("x", tarfile.SYMTYPE, linkname="y/z"), member("y", tarfile.SYMTYPE, linkname="x/..")],
     "by way of other symlinks"),
])
def test_hostile_members_are_refused_in_one_line(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]],
                                                 words: str) -> None:
    path = archive(tmp_path / "h.tar.gz", members)
    with pytest.raises(MountError) as caught:
        check(path, limit=1 << 20, name="pip")
    assert words in str(caught.value)
    assert "mount archive pip" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bomb_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    # 64 MiB of zeros compresses to ~64 KiB; the limit is 1 MiB
    path = tmp_path / "bomb.tar.gz"
    with gzip.open(path, "wb") as gz, tarfile.open(fileobj=gz, mode="w|") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(64 << 20)))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(MountError, match="expands to more than"):
        check(path, limit=1 << 20)


def test_a_header_claiming_a_huge_file_is_refused_at_the_header(tmp_path: Path) -> None:
    # a truncated archive whose header alone says 1 TiB: refused on the header, nothing more is read
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("huge")
        info.size = 0
        tar.addfile(info)
    header = bytearray(raw.getvalue()[:512])
    info = tarfile.TarInfo("huge")
    info.size = 1 << 40
    header[:512] = info.tobuf(format=tarfile.GNU_FORMAT)
    (tmp_path / "huge.tar.gz").write_bytes(gzip.compress(bytes(header)))
    with pytest.raises(MountError, match="expands to more than"):
        check(tmp_path / "huge.tar.gz", limit=1 << 20)


@pytest.mark.parametrize("content", [b"", b"not gzip at all", gzip.compress(b"gzip but not tar" * 100)])
def test_what_is_not_a_tar_archive_is_one_line(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "x.tar.gz").write_bytes(content)
    with pytest.raises(MountError, match="not a gzip-compressed tar archive") as caught:
        check(tmp_path / "x.tar.gz", limit=1 << 20)
    assert "\n" not in str(caught.value)


def test_digest_of_streams_the_file(tmp_path: Path) -> None:
    data = b"abc" * 500_000
    (tmp_path / "f").write_bytes(data)
    assert digest_of(tmp_path / "f") == sha256_digest(data)


_part = st.sampled_from(["a", "b", "..", ".", "", "c.d"])
_path = st.lists(_part, min_size=1, max_size=5).map("/".join)


def _escapes(base: str, target: str) -> bool:
    """Whether ``target``, seen from the directory ``base``, ends up outside the root (walked part by part)."""
    depth = len([p for p in base.split("/") if p not in ("", ".")]) if base else 0
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def refused(path: Path) -> bool:
    try:
        check(path, limit=1 << 20)
    except MountError:
        return True
    return False


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_path, prefix=st.booleans())
def test_a_member_path_is_refused_exactly_when_it_leaves_the_root(tmp_path: Path, name: str, prefix: bool) -> None:
    name = ("/" if prefix else "") + name
    if name.strip("/.") == "" or name.endswith("/"):
        return  # the root itself, or a directory name: not a file member
    path = archive(tmp_path / "p.tar.gz", [member(name, data=b"x")])
    assert refused(path) == (name.startswith("/") or _escapes("", name))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.lists(st.sampled_from(["a", "b"]), max_size=3).map("/".join), target=_path)
def test_a_symlink_is_refused_exactly_when_it_points_out(tmp_path: Path, where: str, target: str) -> None:
    name = f"{where}/link" if where else "link"
    path = archive(tmp_path / "s.tar.gz", [member(name, tarfile.SYMTYPE, linkname=target)])
    assert refused(path) == (target.startswith("/") or _escapes(where, target))


_names = st.sampled_from(["a", "b", "d/c", "d/e"])
_targets = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "..", "."]), min_size=1, max_size=4).map("/".join)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(links=st.dictionaries(_names, _targets, min_size=1, max_size=4))
def test_no_accepted_symlink_resolves_out_of_the_mount(tmp_path: Path, links: dict[str, str]) -> None:
    # What the kernel makes of the same symlinks, unpacked for real, is the judge: whatever passes stays inside.
    import os
    import uuid

    where = tmp_path / uuid.uuid4().hex
    root = where / "mount"
    (root / "d").mkdir(parents=True)
    for name, target in links.items():
        os.symlink(target, root / name)
    path = archive(where / "s.tar.gz", [member("d", tarfile.DIRTYPE),
                                        *(member(n, tarfile.SYMTYPE, linkname=t) for n, t in links.items())])
    if not refused(path):
        for name in links:
            resolved = os.path.realpath(root / name)
            assert os.path.commonpath([resolved, str(root)]) == str(root), (name, resolved)


def test_many_empty_files_count_a_block_each_against_the_limit(tmp_path: Path) -> None:
    """An inode bomb: files of no bytes at all still take the builder's disk; each counts a block."""
    import tarfile as tf

    from cacheport.errors import MountTooLarge
    from cacheport.mounts.archive import MEMBER_COST

    path = tmp_path / "inodes.tar.gz"
    with tf.open(path, "w:gz") as tar:
        for i in range(300):
            tar.addfile(tf.TarInfo(f"f{i}"), io.BytesIO(b""))
    assert check(path, limit=300 * MEMBER_COST) == 0  # just fits: the bytes reported are still the files'
    with pytest.raises(MountTooLarge, match="members count"):
        check(path, limit=299 * MEMBER_COST)
