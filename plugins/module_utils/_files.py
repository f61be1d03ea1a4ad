# -*- coding: utf-8 -*-
# Copyright: upkeep.runbooks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files that must never be half-written: the one atomic writer every backend uses.

A file is written to a temporary name in its own directory, flushed and fsynced, given its
mode, renamed over the target, and the directory is fsynced so the rename survives a
crash. On any failure the temporary file is removed and the target is left as it was.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile


def fsync_dir(path, strict=True):
    """fsync a directory so a rename or create inside it survives a crash.

    With ``strict=False`` a file system that cannot fsync directories is tolerated.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        if strict:
            raise
        return
    try:
        os.fsync(fd)
    except OSError:
        if strict:
            raise
    finally:
        os.close(fd)


def write_atomic(path, data, mode=0o600, strict_dir_sync=True, uid=-1, gid=-1):
    """Write ``data`` (bytes, or text written as UTF-8) to ``path`` atomically with ``mode``.

    ``data`` may also be an iterable of such chunks, written one after the other, so a large
    file (a report, a history) never has to be held whole in memory.
    ``uid``/``gid`` (-1: unchanged) are set on the temporary file before the rename, so the
    file appears under ``path`` already with its final owner and mode.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if uid != -1 or gid != -1:
                os.fchown(handle.fileno(), uid, gid)
            if isinstance(data, (bytes, bytearray, memoryview)):
                handle.write(data)
            else:
                for chunk in data:
                    handle.write(chunk if isinstance(chunk, bytes) else chunk.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory, strict=strict_dir_sync)
