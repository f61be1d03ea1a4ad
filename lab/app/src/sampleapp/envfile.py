"""Configuration for the sample application: env files plus the process environment.

SAMPLEAPP_ENV_FILE names one env file or several separated by ``:`` (the lab uses
``/etc/sampleapp/env:/etc/sampleapp/secrets.env``: provisioned settings, then the
secrets rendered from Vault). A key may be set in one of them only: a key found in
two files is an error, so a stale value left in one file can never silently win or
lose against a rotated one.

Each env file holds simple ``KEY=VALUE`` lines. It is read without any shell
semantics: no quoting, no variable expansion, no ``export`` keyword. Blank lines
and lines whose first non-blank character is ``#`` are ignored. The key is the
text before the first ``=`` (surrounding blanks removed); the value is everything
after the first ``=``, taken verbatim (``=``, ``#``, ``$``, quotes and blanks
included). Only the line ending is removed.

Values are secrets (database password, SECRET_KEY): nothing here ever puts a
value in an exception message or a log line. Errors name the file, the line
number and the key only.

The parser needs nothing from Django; settings errors are raised as Django's
ImproperlyConfigured when Django is importable.
"""

import os
import re
import stat

DEFAULT_ENV_FILE = "/etc/sampleapp/env"
ENV_FILE_VARIABLE = "SAMPLEAPP_ENV_FILE"
ENV_FILE_SEPARATOR = ":"

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class ConfigError(Exception):
    """Raised for an unreadable or malformed env file, or a missing/invalid key.

    Messages carry key names, paths and line numbers, never values.
    """


try:
    from django.core.exceptions import ImproperlyConfigured as _SettingsError
except ImportError:  # pragma: no cover - the app always has Django; the parser works without it
    _SettingsError = ConfigError


def _improperly_configured(message):
    """Django's ImproperlyConfigured (ConfigError without Django)."""
    return _SettingsError(message)


def parse_env_text(text, source="<env>"):
    """Parse env-file text into a dict. Later lines win over earlier ones."""
    values = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" not in raw:
            raise ConfigError(f"{source}, line {number}: expected KEY=VALUE")
        key, value = raw.split("=", 1)
        key = key.strip()
        if not _KEY_RE.match(key):
            raise ConfigError(f"{source}, line {number}: invalid key name")
        values[key] = value
    return values


def parse_env_file(path):
    """Read and parse the env file at ``path``.

    Refuses a file that other users can access (any "other" permission bit):
    it holds credentials. Group access is allowed so that a root-owned file can
    be shared with the service group (0640); the lab writes it 0600.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & stat.S_IRWXO:
                raise ConfigError(
                    f"{path} is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
                    "make it 0600 or 0640"
                )
            text = handle.read()
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not valid UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc.__class__.__name__}") from None
    return parse_env_text(text, source=path)


def load_env_files(paths):
    """Parse several env files into one dict; a key set in two of them is an error."""
    values, origin = {}, {}
    for path in paths:
        for key, value in parse_env_file(path).items():
            if key in origin:
                raise ConfigError(f"{key} is set in both {origin[key]} and {path}; set it in one file only")
            values[key], origin[key] = value, path
    return values


class Config:
    """Settings lookup: the process environment first, then the env file."""

    def __init__(self, file_values=None, environ=None, source=None):
        self.file_values = dict(file_values or {})
        self.environ = os.environ if environ is None else environ
        self.source = source or "the process environment"

    @classmethod
    def load(cls, environ=None):
        """Load the env files named by SAMPLEAPP_ENV_FILE (default /etc/sampleapp/env).

        SAMPLEAPP_ENV_FILE lists one or more paths separated by ``:``; every file named
        explicitly must exist, and no key may appear in two of them. The default file is
        optional: without it every setting comes from the process environment.
        """
        environ = os.environ if environ is None else environ
        explicit = environ.get(ENV_FILE_VARIABLE)
        if explicit:
            paths = [path for path in explicit.split(ENV_FILE_SEPARATOR) if path.strip()]
            if not paths:
                raise _improperly_configured(f"Failed to load settings: {ENV_FILE_VARIABLE} names no file")
        elif os.path.exists(DEFAULT_ENV_FILE):
            paths = [DEFAULT_ENV_FILE]
        else:
            return cls({}, environ)
        try:
            values = load_env_files(paths)
        except ConfigError as exc:
            raise _improperly_configured(f"Failed to load settings: {exc}") from None
        return cls(values, environ, source="the process environment or " + ", ".join(paths))

    def get(self, key, default=None):
        if key in self.environ:
            return self.environ[key]
        return self.file_values.get(key, default)

    def require(self, *keys):
        """Return the values of ``keys``; raise naming every missing or empty key."""
        missing = [key for key in keys if not self.get(key)]
        if missing:
            raise _improperly_configured(
                "Missing required setting(s) {} (looked in {})".format(", ".join(missing), self.source)
            )
        return [self.get(key) for key in keys]

    def get_list(self, key):
        """Comma-separated list; blanks around items and empty items are dropped."""
        return [item.strip() for item in (self.get(key) or "").split(",") if item.strip()]

    def get_bool(self, key, default=False):
        value = self.get(key)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise _improperly_configured(f"Setting {key} must be one of true/false/1/0/yes/no/on/off")

    def get_int(self, key, default):
        value = self.get(key)
        if value is None or not value.strip():
            return default
        try:
            return int(value.strip())
        except ValueError:
            raise _improperly_configured(f"Setting {key} must be an integer") from None
