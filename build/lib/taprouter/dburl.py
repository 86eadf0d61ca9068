"""The `database:` URL: SQLite (a file) or PostgreSQL, read into a typed value and checked."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT = "sqlite:////var/lib/taprouter/taprouter.db"
FORMS = ("sqlite:////ABSOLUTE/PATH.db, postgresql://USER@/DB?host=/SOCKET/DIR or "
         "postgresql://USER:PASSWORD@HOST:PORT/DB")
# libpq's parameters that make sense in a URL here; anything else is more likely a typo.
PG_OPTIONS = ("host", "port", "sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout",
              "application_name", "passfile", "target_session_attrs")


class DatabaseUrlError(ValueError):
    """The URL cannot name a database; the message says why and never repeats a password."""


@dataclass(frozen=True)
class DatabaseUrl:
    engine: str  # "sqlite" or "postgresql"
    name: str  # SQLite: the file's absolute path; PostgreSQL: the database's name
    user: str = ""
    password: str = ""
    host: str = ""  # a host name, an address, or a directory holding the Unix socket
    port: int | None = None
    options: tuple[tuple[str, str], ...] = ()  # other libpq parameters, in the URL's order

    def shown(self) -> str:
        """The URL without its password, for messages and logs."""
        if self.engine == "sqlite":
            return f"sqlite:///{self.name}"
        who = self.user + (":***" if self.password else "")
        where = self.host if self.host and not self.host.startswith("/") else ""
        port = f":{self.port}" if self.port is not None and where else ""
        query = "&".join(f"{k}={v}" for k, v in (*self._socket_host(), *self.options))
        return f"postgresql://{who}{'@' if who else ''}{where}{port}/{self.name}" + (f"?{query}" if query else "")

    def _socket_host(self) -> tuple[tuple[str, str], ...]:
        if self.host.startswith("/"):
            return (("host", self.host),) + ((("port", str(self.port)),) if self.port is not None else ())
        return ()


def parse(text: object) -> DatabaseUrl:
    """A DatabaseUrl, or DatabaseUrlError saying what is wrong (and what is right: FORMS)."""
    if not isinstance(text, str) or not text.strip():
        raise DatabaseUrlError(f"must be a URL: {FORMS}")
    scheme, _, rest = text.partition("://")
    if not rest:
        raise DatabaseUrlError(f"is not a URL: {FORMS}")
    if scheme == "sqlite":
        return _sqlite(rest)
    if scheme in ("postgresql", "postgres"):
        return _postgresql(text)
    raise DatabaseUrlError(f"the scheme {scheme[:20]!r} is not sqlite or postgresql: {FORMS}")


def _sqlite(rest: str) -> DatabaseUrl:
    # sqlite:////var/lib/x.db: an empty host, then the absolute path /var/lib/x.db.
    if not rest.startswith("//") or rest.startswith("///"):
        raise DatabaseUrlError("a SQLite URL is sqlite:// and an absolute path, four slashes in all: "
                               "sqlite:////var/lib/taprouter/taprouter.db")
    path = rest[1:]
    if "?" in path or "#" in path:
        raise DatabaseUrlError("a SQLite URL takes no ?options")
    if path.endswith("/") or "\0" in path:
        raise DatabaseUrlError(f"{path[:60]!r} is not a file's path")
    return DatabaseUrl("sqlite", path)


def _postgresql(text: str) -> DatabaseUrl:
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError as exc:  # a port that is not a number, an unbalanced [
        raise DatabaseUrlError(f"is not a PostgreSQL URL ({exc}): {FORMS}") from None
    name = unquote(url.path.lstrip("/"))
    if not name or "/" in name:
        raise DatabaseUrlError(f"names no database (the part after the last '/'): {FORMS}")
    options: list[tuple[str, str]] = []
    host, query_port = unquote(url.hostname or ""), None
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        if key not in PG_OPTIONS:
            raise DatabaseUrlError(f"?{key[:20]}= is not a parameter taprouter passes on "
                                   f"(known: {', '.join(PG_OPTIONS)})")
        if key == "host":
            if host:
                raise DatabaseUrlError("gives the host twice: before the database and as ?host=")
            host = value
        elif key == "port":
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise DatabaseUrlError(f"?port={value[:20]} is not a port in 1..65535")
            query_port = int(value)
        else:
            options.append((key, value))
    if port is not None and query_port is not None:
        raise DatabaseUrlError("gives the port twice")
    if port is not None and not 0 < port < 65536:
        raise DatabaseUrlError(f"port {port} is not in 1..65535")
    if "/" in host and not host.startswith("/"):
        raise DatabaseUrlError("a socket directory (?host=) must be an absolute path")
    return DatabaseUrl("postgresql", name, unquote(url.username or ""), unquote(url.password or ""), host,
                       port if port is not None else query_port, tuple(options))
