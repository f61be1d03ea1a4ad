# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read what a log file gained since the last run, across rotation, counting nothing twice.

A position is ``{dev, inode, offset, head_len, head}``: the file identity, how far it was read,
and a hash of its first ``head_len`` bytes (at most HEAD_BYTES). ``read_since(path, position)``
returns the complete lines written since that position and the new position:

* same file (same inode), not shorter and with the same head: read on from ``offset``;
* otherwise the file was rotated (another inode, or the same inode reused for a new file) or
  truncated in place (``copytruncate``). The old content is looked for in the same directory
  (or ``rotated_dir``): first by inode and head among the uncompressed files, then by its
  head among the files named ``<name>*`` (``.gz`` ones decompressed), so ``delaycompress``,
  immediate compression and ``copytruncate``'s copy are all followed. The rest of the old file
  is read from ``offset``, then the current file from its start. Not finding it is a gap,
  said in ``gaps``.
* no position (first run): the whole current file, or nothing with ``start='end'``.

A trailing line without its newline is left for the next run in the current file (the writer
is still writing it); in a rotated file everything is read. Lines are returned as text
(UTF-8, undecodable bytes replaced).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import hashlib
import os

HEAD_BYTES = 256


def _head_hash(data):
    return hashlib.sha256(data).hexdigest()


def _read_head(opener, path, size):
    with opener(path, "rb") as handle:
        return handle.read(size)


def _open_for(path):
    return gzip.open if path.endswith(".gz") else open


def _lines(data, complete_only):
    """bytes -> (list of text lines, bytes consumed)."""
    if complete_only:
        cut = data.rfind(b"\n") + 1
    else:
        cut = len(data)
    text = data[:cut].decode("utf-8", "replace")
    return text.splitlines(), cut


def _read_from(path, offset, complete_only):
    opener = _open_for(path)
    with opener(path, "rb") as handle:
        if offset:
            handle.seek(offset)
        data = handle.read()
    lines, used = _lines(data, complete_only)
    return lines, offset + used


def _position(path, stat, offset):
    head_len = min(offset, HEAD_BYTES)
    head = _read_head(open, path, head_len) if head_len else b""
    return {"dev": stat.st_dev, "inode": stat.st_ino, "offset": offset, "head_len": head_len,
            "head": _head_hash(head)}


def _same_head(path, position):
    head_len = position.get("head_len") or 0
    if not head_len:
        return True
    try:
        data = _read_head(_open_for(path), path, head_len)
    except (OSError, EOFError, gzip.BadGzipFile):
        return False
    return len(data) == head_len and _head_hash(data) == position.get("head")


def find_rotated(path, position, rotated_dir=None):
    """Where the file described by ``position`` went after rotation, or None.

    An uncompressed file with the same inode and the same first bytes wins; then any file named
    ``<name>*`` (``.gz`` decompressed) with the same first bytes. Inodes alone are not trusted:
    a file system reuses the inode of a deleted file for the next one it creates.
    """
    directory = rotated_dir or os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return None
    current = os.path.abspath(path)
    candidates = [os.path.join(directory, name) for name in entries
                  if name.startswith(base) and os.path.join(directory, name) != current]
    for candidate in candidates:
        if candidate.endswith(".gz"):
            continue
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if st.st_ino == position.get("inode") and st.st_dev == position.get("dev") and _same_head(candidate, position):
            return candidate
    if not position.get("head_len"):
        return None
    for candidate in candidates:
        if _same_head(candidate, position):
            return candidate
    return None


def read_since(path, position=None, start="beginning", rotated_dir=None):
    """Lines written to ``path`` since ``position``.

    Returns ``(lines, new_position, info)``; ``info`` has ``rotated_from`` (the old file read
    first, or None), ``truncated`` (bool), ``gaps`` (list of text) and ``bytes_read``.
    Raises OSError when ``path`` cannot be read.
    """
    info = {"rotated_from": None, "truncated": False, "gaps": [], "bytes_read": 0, "first_run": position is None}
    st = os.stat(path)
    lines = []
    offset = 0
    if position is None:
        if start == "end":
            return [], _position(path, st, st.st_size), info
    else:
        same_inode = st.st_ino == position.get("inode") and st.st_dev == position.get("dev")
        if same_inode and st.st_size >= position.get("offset", 0) and _same_head(path, position):
            offset = position.get("offset", 0)
        else:
            old = find_rotated(path, position, rotated_dir)
            if old is not None:
                try:
                    old_lines, old_end = _read_from(old, position.get("offset", 0), complete_only=False)
                except (OSError, EOFError, gzip.BadGzipFile) as exc:
                    info["gaps"].append("could not read the rotated file %s: %s" % (old, exc))
                else:
                    lines.extend(old_lines)
                    info["bytes_read"] += old_end - position.get("offset", 0)
                    info["rotated_from"] = old
            elif same_inode:
                info["truncated"] = True
                info["gaps"].append(
                    "%s was truncated in place since the last run and no copy of it was found next to it; lines "
                    "written between the last run and the truncation were not seen" % path)
            else:
                info["gaps"].append(
                    "%s was rotated since the last run and the old file was not found next to it; lines written "
                    "to it after the last run were not counted" % path)
    new_lines, end = _read_from(path, offset, complete_only=True)
    lines.extend(new_lines)
    info["bytes_read"] += end - offset
    return lines, _position(path, st, end), info
