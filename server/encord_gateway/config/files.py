"""Reading the files settings name (the TOML document, the passphrase, the store's password), safely."""

from __future__ import annotations

import os
import stat
import tomllib
from typing import Any

from encord_gateway.config.options import ConfigError


def read_regular_file(path: str, what: str) -> bytes:
    """The bytes of a regular file; anything else (a FIFO, a device, a directory) is refused, never waited on.

    A FIFO would block open() until a writer appears, and a reload stuck there would hold up shutdown.
    The check before open() refuses it; O_NONBLOCK and the check after open() cover a file swapped in
    between the two.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(f"{what} {path} is not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"{what} {path} is not a regular file")
            return f.read()
        except OSError as exc:
            raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None


def read_document(path: str) -> dict[str, Any]:
    data = read_regular_file(path, "config file")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not valid TOML: not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def read_state_password(path: str) -> str:
    """The state store's password: the file's text less a final newline; errors never show it."""
    data = read_regular_file(path, "state password file")
    try:
        password = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError(f"state password file {path} is not UTF-8 text") from None
    if not password:
        raise ConfigError(f"state password file {path} is empty")
    return password


def read_passphrase(path: str) -> str:
    """The signing key's passphrase: the file's text less a final newline; errors never show it."""
    data = read_regular_file(path, "passphrase file")
    try:
        return data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ConfigError(f"passphrase file {path} is not UTF-8 text") from None
