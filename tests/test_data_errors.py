"""Data and set-up errors that name the fix (issue 17, item 4).

No network is used: downloads go to a stand-in for ``wfdb.dl_files`` or to a local server that
never answers; the Makefile logic runs on a throwaway copy in ``tmp_path`` with dummy venvs.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from utils.core import config
from utils.data import mitdb as data

MAKEFILE = config.ROOT / "Makefile"


# --------------------------------------------------------------------------- download
def test_no_network_gives_one_paragraph_with_mitdb_dir_and_no_empty_partial(tmp_path,
                                                                            monkeypatch):
    import requests
    import wfdb

    def offline(*args, **kwargs):
        raise requests.exceptions.ConnectionError("Failed to resolve 'physionet.org'")

    monkeypatch.setattr(wfdb, "dl_files", offline)
    target = tmp_path / "mitdb"
    with pytest.raises(data.DatabaseError) as err:
        data.download_mitdb(target, records=["100"])
    message = str(err.value)
    assert "MITDB_DIR" in message and "physionet.org/content/mitdb" in message
    assert "\n" not in message and "ConnectionError" in message
    assert not (tmp_path / "mitdb.partial").exists()
    assert not target.exists()


def test_failed_download_removes_the_half_written_file_keeps_good_ones(tmp_path, monkeypatch,
                                                                       mitdb_dir):
    import wfdb

    def flaky(db, dl_dir, files, **kwargs):
        name = files[0]
        if name == "100.atr":
            (Path(dl_dir) / name).write_bytes(b"half")
            raise OSError("connection reset")
        shutil.copy(mitdb_dir / name, Path(dl_dir) / name)

    monkeypatch.setattr(wfdb, "dl_files", flaky)
    with pytest.raises(data.DatabaseError, match="stay in"):
        data.download_mitdb(tmp_path / "mitdb", records=["100"])
    partial = tmp_path / "mitdb.partial"
    assert sorted(p.name for p in partial.iterdir()) == ["100.dat", "100.hea"]


class _SilentServer:
    """A TCP server that accepts connections and never answers (a black-holed network)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.clients = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(conn)

    def close(self):
        for conn in self.clients:
            conn.close()
        self.sock.close()


def test_download_times_out_when_the_server_never_answers(tmp_path, monkeypatch):
    from wfdb.io import download

    server = _SilentServer()
    monkeypatch.setattr(download, "PN_CONTENT_URL", f"http://127.0.0.1:{server.port}/")
    start = time.perf_counter()
    try:
        with pytest.raises(data.DatabaseError, match="does not answer within|Timeout"):
            data.download_mitdb(tmp_path / "mitdb", records=["100"], timeout=1.0)
    finally:
        server.close()
    assert time.perf_counter() - start < 30
    assert not (tmp_path / "mitdb.partial").exists()


# --------------------------------------------------------------------------- bad files and paths
def _copy_of(mitdb_dir: Path, folder: Path, records=("100",)) -> Path:
    folder.mkdir()
    for name in data.required_files(records):
        shutil.copy(mitdb_dir / name, folder / name)
    return folder


def _damage(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_damaged_file_in_mitdb_dir_says_fix_that_copy(tmp_path, monkeypatch, mitdb_dir):
    copy = _copy_of(mitdb_dir, tmp_path / "mine")
    _damage(copy / "100.dat")
    monkeypatch.setenv(config.MITDB_ENV, str(copy))
    with pytest.raises(data.DatabaseError) as err:
        data.ensure_mitdb(data_dir=tmp_path / "absent", records=["100"], download=False)
    message = str(err.value)
    assert "100.dat" in message and "your own copy" in message and "unset MITDB_DIR" in message
    assert "Delete" not in message


def test_damaged_file_in_downloaded_copy_says_delete_and_rerun(tmp_path, monkeypatch,
                                                               mitdb_dir):
    monkeypatch.delenv(config.MITDB_ENV, raising=False)
    local = _copy_of(mitdb_dir, tmp_path / "mitdb")
    _damage(local / "100.atr")
    with pytest.raises(data.DatabaseError, match=r"Delete the file .* `make data`"):
        data.verify_database(local, ["100"])


def test_rerun_after_deleting_a_damaged_file_downloads_only_that_file(tmp_path, monkeypatch,
                                                                      mitdb_dir):
    import wfdb

    monkeypatch.delenv(config.MITDB_ENV, raising=False)
    local = _copy_of(mitdb_dir, tmp_path / "mitdb")
    (local / "100.atr").unlink()
    fetched = []

    def fetch(db, dl_dir, files, **kwargs):
        fetched.extend(files)
        shutil.copy(mitdb_dir / files[0], Path(dl_dir) / files[0])

    monkeypatch.setattr(wfdb, "dl_files", fetch)
    assert data.ensure_mitdb(data_dir=local, records=["100"]) == local
    assert fetched == ["100.atr"]
    data.verify_database(local, ["100"])


def test_path_that_is_a_file(tmp_path, monkeypatch):
    path = tmp_path / "mitdb.zip"
    path.write_bytes(b"zip")
    with pytest.raises(data.DatabaseError, match="is a file, not a folder"):
        data.verify_database(path, ["100"])
    monkeypatch.setenv(config.MITDB_ENV, str(path))
    with pytest.raises(data.DatabaseError, match="is a file, not a folder"):
        data.ensure_mitdb(data_dir=tmp_path / "absent", records=["100"], download=False)


def test_missing_folder(tmp_path):
    with pytest.raises(data.DatabaseError, match="does not exist"):
        data.verify_database(tmp_path / "nope", ["100"])


def test_unreadable_folder(tmp_path, monkeypatch):
    """As root, chmod does not stop reads, so the PermissionError is simulated."""
    folder = tmp_path / "locked"
    folder.mkdir()
    real_scandir = data.os.scandir

    def scandir(path):
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(data.os, "scandir", scandir)
    with pytest.raises(data.DatabaseError, match="cannot be read .*chmod -R u\\+rX"):
        data.verify_database(folder, ["100"])


def test_unreadable_file(tmp_path, monkeypatch, mitdb_dir):
    copy = _copy_of(mitdb_dir, tmp_path / "mine")

    def refuse(path, chunk=1 << 20):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(data, "sha256_file", refuse)
    with pytest.raises(data.DatabaseError, match="100.hea cannot be read"):
        data.verify_database(copy, ["100"])


def test_make_data_prints_the_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(config.MITDB_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setattr(config, "DATA_DIR", tmp_path)
    with pytest.raises(SystemExit) as err:
        data.main()
    assert "does not exist" in str(err.value) and str(err.value).startswith("error:")


# --------------------------------------------------------------------------- Makefile
def _fake_python(path: Path, version: str) -> None:
    """A stand-in interpreter that answers the Makefile's two version probes."""
    major, minor = map(int, version.split(".")[:2])
    ok = (3, 10) <= (major, minor) <= (3, 12)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n"
                    f'case "$*" in *version.split*) echo {version};; '
                    f"*) exit {0 if ok else 1};; esac\n")
    path.chmod(0o755)


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
@pytest.mark.parametrize("version,recreated", [("3.9.18", True), ("3.13.0", True),
                                               ("3.11.7", False), (None, True)])
def test_makefile_recreates_a_venv_of_an_unsupported_python(tmp_path, version, recreated):
    shutil.copy(MAKEFILE, tmp_path / "Makefile")
    venv = tmp_path / ".venv"
    if version is None:  # a venv whose interpreter was removed
        (venv / "bin").mkdir(parents=True)
    else:
        _fake_python(venv / "bin" / "python", version)
    result = subprocess.run(["make", "--no-print-directory", "check-venv"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert venv.exists() is not recreated
    if recreated:
        assert "Recreating .venv" in result.stdout and "not 3.10-3.12" in result.stdout
        if version:
            assert version in result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_makefile_sandbox_target_explains_missing_bwrap(tmp_path):
    """Without bwrap on PATH (and not root, or no apt-get), `make sandbox` says what to do."""
    shutil.copy(MAKEFILE, tmp_path / "Makefile")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("sh", "id", "echo"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    result = subprocess.run([shutil.which("make"), "--no-print-directory", "sandbox"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={"PATH": str(bindir)})
    assert result.returncode != 0
    assert "needs bubblewrap" in result.stdout and "apt-get install bubblewrap" in result.stdout
