"""Files <-> at most N shards of at most M bytes each, with a SHA-256 manifest (standard library only).

What a remote run can send back is a few plain files of bounded size (`MAX_FILES` of at most
`MAX_SHARD_BYTES`, `MAX_TOTAL_BYTES` together, simple names). `write_shards` puts a set of files
(relative names -> paths) into one uncompressed tar stream cut into shards
`shard-00.bin, shard-01.bin, ...` and writes `shards.json`:

    {"format": 1, "stream_sha256": ..., "stream_bytes": ...,
     "shards": [{"name": "shard-00.bin", "bytes": ..., "sha256": ...}, ...],
     "members": {"unet/model.keras": {"bytes": ..., "sha256": ...}, ...}}

`read_shards` checks every shard against the manifest (size and SHA-256, then the whole stream),
refuses members that would land outside the target folder, and checks every extracted file
against its own SHA-256: a flipped byte anywhere is one `ValueError` line naming the shard or file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path, PurePosixPath
from typing import Mapping, Union

PathLike = Union[str, os.PathLike]

MANIFEST = "shards.json"
MAX_FILES = 8  # what comes back from a remote run, the manifest included
MAX_SHARD_BYTES = 16 * 2**20
MAX_TOTAL_BYTES = 64 * 2**20
FORMAT = 1


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_name(name: str) -> str:
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or ".." in parts or "\\" in name:
        raise ValueError(
            f"a member name must be a relative path without '..'. Received: name={name!r}"
        )
    return str(PurePosixPath(*parts))


def _tar_stream(files: Mapping[str, PathLike]) -> tuple[bytes, dict]:
    buffer = io.BytesIO()
    members = {}
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            path = Path(files[name])
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file (member {name!r})")
            data = path.read_bytes()
            info = tarfile.TarInfo(_check_name(name))
            info.size, info.mode, info.mtime = len(data), 0o644, int(path.stat().st_mtime)
            tar.addfile(info, io.BytesIO(data))
            members[info.name] = {"bytes": len(data), "sha256": sha256_bytes(data)}
    return buffer.getvalue(), members


def write_shards(files: Mapping[str, PathLike], out_dir: PathLike, *,
                 max_shard_bytes: int = MAX_SHARD_BYTES, max_files: int = MAX_FILES,
                 max_total_bytes: int = MAX_TOTAL_BYTES) -> dict:
    """Writes `files` as shards + `shards.json` into `out_dir`; returns the manifest.

    Args:
        files: member name (relative, "/"-separated) -> file to read.
        out_dir: folder to write into (created; shards of an earlier call are replaced).
        max_shard_bytes, max_files, max_total_bytes: the return channel's limits; `max_files`
            counts the manifest.

    Raises:
        ValueError: the files do not fit the limits (says by how much), or a bad member name.
    """
    if max_shard_bytes < 1 or max_files < 2:
        raise ValueError(
            "`max_shard_bytes` must be >= 1 and `max_files` >= 2 (one shard and the manifest). "
            f"Received: max_shard_bytes={max_shard_bytes}, max_files={max_files}"
        )
    stream, members = _tar_stream(files)
    count = max(1, -(-len(stream) // max_shard_bytes))
    total = len(stream) + 4096  # the manifest's share, generously
    if count > max_files - 1 or total > max_total_bytes:
        raise ValueError(
            f"{len(members)} files make a {len(stream) / 2**20:.1f} MiB stream: {count} shard(s) of "
            f"<= {max_shard_bytes / 2**20:.0f} MiB, while at most {max_files - 1} shard(s) and "
            f"{max_total_bytes / 2**20:.0f} MiB in all may come back; send less "
            f"(Received: files={sorted(members)})"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shard-*.bin"):
        old.unlink()
    shards = []
    for index in range(count):
        chunk = stream[index * max_shard_bytes:(index + 1) * max_shard_bytes]
        name = f"shard-{index:02d}.bin"
        (out / name).write_bytes(chunk)
        shards.append({"name": name, "bytes": len(chunk), "sha256": sha256_bytes(chunk)})
    manifest = {
        "format": FORMAT,
        "stream_bytes": len(stream),
        "stream_sha256": sha256_bytes(stream),
        "shards": shards,
        "members": members,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def read_manifest(folder: PathLike) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {MANIFEST} (not the output of a device run)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT}")
    return manifest


def read_shards(folder: PathLike, dest: PathLike) -> dict:
    """Verifies the shards in `folder` and extracts their files under `dest`; returns the manifest.

    Nothing is written under `dest` unless every shard and the whole stream check out.

    Raises:
        FileNotFoundError: no manifest, or a shard it names is missing.
        ValueError: a shard's size or SHA-256 differs (the damaged shard named), the stream's
            SHA-256 differs, a member escapes `dest`, or an extracted file's SHA-256 differs.
    """
    folder, dest = Path(folder), Path(dest)
    manifest = read_manifest(folder)
    parts = []
    for shard in manifest["shards"]:
        path = folder / shard["name"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: shard missing ({len(manifest['shards'])} expected)")
        data = path.read_bytes()
        if len(data) != shard["bytes"]:
            raise ValueError(f"{path}: {len(data)} bytes, the manifest says {shard['bytes']} (cut short?)")
        if sha256_bytes(data) != shard["sha256"]:
            raise ValueError(f"{path}: SHA-256 differs from {MANIFEST} (damaged shard)")
        parts.append(data)
    stream = b"".join(parts)
    if sha256_bytes(stream) != manifest["stream_sha256"]:
        raise ValueError(f"{folder}: the joined shards' SHA-256 differs from {MANIFEST}")
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r") as tar:
        for info in tar.getmembers():
            name = _check_name(info.name)
            target = (root / name).resolve()
            if not info.isfile() or not target.is_relative_to(root):
                raise ValueError(f"{folder}: member {info.name!r} is not a plain file inside {dest}")
            expected = manifest["members"].get(name)
            data = tar.extractfile(info).read()
            if expected is None or sha256_bytes(data) != expected["sha256"]:
                raise ValueError(f"{folder}: member {name} does not match its SHA-256 in {MANIFEST}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return manifest
