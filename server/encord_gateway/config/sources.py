"""The one flag > environment > TOML file > default lookup, and the one boolean parser, of every command."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

# Where a value came from, as Picked.source says it.
FLAG: Final = "flag"
ENV: Final = "env"
FILE: Final = "toml"
DEFAULT: Final = "default"

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_bool(text: str) -> bool:
    """1/true/yes/on or 0/false/no/off, in any case and with spaces around; anything else is ValueError."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"not a boolean: {text!r}")


@dataclass(frozen=True)
class Picked:
    """One setting's raw value and where it was found; the command converts it and words any error."""

    value: Any
    source: str  # FLAG, ENV, FILE or DEFAULT
    origin: str  # "--listen", "$ENCORD_GATEWAY_LISTEN", the TOML file's path, or "default"


@dataclass(frozen=True)
class Layers:
    """Where settings are looked up, highest first: the parsed flags, the environment, a TOML table.

    A flag counts when it is not None (argparse's default for an absent one), so an empty flag can turn a
    setting off; an empty environment variable counts as unset, as `NAME= command` means in a shell.
    """

    flags: Mapping[str, Any]  # argparse dest -> value (vars(args))
    env: Mapping[str, str]
    table: Mapping[str, Any] = field(default_factory=dict)
    table_origin: str = ""  # the file the table came from, for messages

    def pick(
        self, dest: str, *, env: str | None = None, key: str | None = None, default: Any = None
    ) -> Picked:
        """The flag `dest`, else the variable `env`, else the table's `key`, else `default`."""
        flag_value = self.flags.get(dest)
        if flag_value is not None:
            return Picked(flag_value, FLAG, "--" + dest.replace("_", "-"))
        if env is not None and self.env.get(env, "") != "":
            return Picked(self.env[env], ENV, f"${env}")
        if key is not None and key in self.table:
            return Picked(self.table[key], FILE, self.table_origin)
        return Picked(default, DEFAULT, DEFAULT)
