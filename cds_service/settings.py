"""Service settings: one table of named settings with defaults and help (datasette style).

Precedence, highest first (uvicorn's): command-line option > ``CDS_<NAME>`` environment
variable > the TOML file given with ``--config`` (or ``CDS_CONFIG``) > the default below.
The file has ``[service]``, ``[security]`` (with ``[[security.issuers]]``) and ``[policy]``
tables; site policies come from ``[policy]`` or ``CDS_POLICY_<FIELD>``. Anything that does
not parse is a :class:`SettingsError` naming the setting and where it came from, so the CLI
can stop with a message that says what to fix (STYLE.md §11).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cds_service.errors import SactCdsError
from cds_service.features import SitePolicy

ENV_PREFIX = "CDS_"
#: JWT algorithms an issuer may be allowed (CDS Hooks 2.0 §trusting-cds-clients: never
#: ``none``, never HMAC; ES384/RS384 recommended, the others only where configured).
PERMITTED_ALGORITHMS = frozenset(
    {"ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS256", "PS384", "PS512"}
)
DEFAULT_ALGORITHMS = ("ES384", "RS384")


class SettingsError(SactCdsError):
    """A setting has a value we cannot use; the message names the setting and its source."""


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: what the README documents and ``--help`` shows."""

    name: str
    default: Any
    help: str
    section: str = "service"
    kind: type = str
    secret: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _default_knowledge_dirs() -> tuple[Path, ...]:
    try:  # the knowledge layer owns the default; fall back to the repo layout it documents
        from cds_service.knowledge import KNOWLEDGE_DIRS

        return tuple(Path(p) for p in KNOWLEDGE_DIRS)
    except ImportError:
        root = Path(__file__).resolve().parent.parent
        return (root / "plan_definitions", root / "fhir_profiles")


# fmt: off
SETTINGS: tuple[Setting, ...] = (
    Setting("host", "127.0.0.1", "Address to bind. Loopback by default; any other address needs trusted "
            "issuers or --allow-unauthenticated."),
    Setting("port", 8080, "TCP port to bind.", kind=int),
    Setting("workers", 1, "Worker processes, each with its own listening socket (SO_REUSEPORT) so "
            "keep-alive clients are spread across them; the knowledge is compiled once before they are "
            "forked; used JWT ids are shared through the store.", kind=int),
    Setting("data_dir", "./data", "Directory for local state (the default SQLite audit store); created "
            "if missing.", kind=Path),
    Setting("database_url", "", "SQLAlchemy URL of the audit store. Empty = sqlite:///<data_dir>/audit.sqlite; "
            "PostgreSQL is a URL change (postgresql+psycopg://user:pw@host/db). Password masked in logs.",
            secret=True),
    Setting("knowledge_dirs", None, "Directories of FHIR knowledge artifacts to serve (os.pathsep-separated "
            "in the environment). Default: the bundled plan_definitions/ and fhir_profiles/.", kind=tuple),
    Setting("public_base_url", "", "Public base URL of this service as clients call it (e.g. "
            "https://cds.example.org); JWT `aud` is checked against it, never against the request's Host "
            "header. Required with trusted issuers on a non-loopback address; empty on loopback = the bind "
            "address (http://127.0.0.1:<port>)."),
    Setting("cors_origins", ("https://sandbox.cds-hooks.org",), "Browser origins allowed by CORS "
            "(comma-separated). Default: only the reference CDS Hooks sandbox; `*` allows any origin "
            "(credentials are never allowed).", kind=tuple),
    Setting("docs", True, "Serve /docs (Swagger UI over /openapi.json; the page loads its script from "
            "cdn.jsdelivr.net). false turns it off; /openapi.json is always served.", kind=bool),
    Setting("log_level", "INFO", "Log level: DEBUG, INFO, WARNING, ERROR."),
    Setting("log_format", "json", "Log format: `json` (one structured object per line) or `text`."),
    Setting("ssl_certfile", "", "TLS certificate (PEM) to serve https directly; empty = plain http behind a "
            "TLS-terminating proxy (CDS Hooks requires TLS in production).", kind=Path),
    Setting("ssl_keyfile", "", "TLS private key (PEM) for ssl_certfile.", kind=Path),
    Setting("max_request_bytes", 5_000_000, "Largest request body accepted; larger bodies get HTTP 413.",
            kind=int),
    Setting("request_read_timeout_seconds", 10.0, "Deadline for a client to send a request head (from "
            "connecting or the previous response; trickled bytes do not extend it: the connection is "
            "closed) and, separately, its body (HTTP 408).", kind=float),
    Setting("keep_alive_timeout_seconds", 5.0, "Idle keep-alive connections are closed after this long "
            "(uvicorn's timeout_keep_alive).", kind=float),
    Setting("fetch_timeout_seconds", 5.0, "Hard timeout of each call to the client's fhirServer when "
            "prefetch is incomplete.", kind=float),
    Setting("fetch_concurrency", 10, "Most calls to fhirServer in flight at once for one hook invocation "
            "(the services ask for up to 9 prefetch keys: 10 fetches them all in one round trip).",
            kind=int),
    Setting("fetch_max_pages", 10, "Most searchset pages followed (Bundle.link next) per prefetch key.",
            kind=int),
    Setting("fetch_deadline_seconds", 10.0, "One deadline for the whole fallback fetch of a hook call (all "
            "keys and pages); keys unfinished by then are a 412 (or a data-unavailable card).", kind=float),
    Setting("fetch_max_bytes", 20_000_000, "One byte budget for the whole fallback fetch of a hook call, "
            "shared by all keys and pages.", kind=int),
    Setting("fhir_server_allowlist", (), "fhirServer base URLs the fallback may call (comma-separated; "
            "`http://127.0.0.1` allows every port of that host). Empty = any public https server; loopback, "
            "private and link-local addresses only when listed. Listed = only those.", kind=tuple),
    Setting("allow_http_fhir_server", False, "Fetch from a plain-http fhirServer that is not loopback (the "
            "spec requires https in production; only for test rigs).", kind=bool),
    Setting("trusted_issuers", (), "JWT issuers trusted to call the service: a list of {iss, jwks_url | "
            "jwks_file, algorithms, jku, max_lifetime_seconds} ([[security.issuers]] in the file, a JSON "
            "array in the environment). None = unauthenticated (loopback only).", section="security",
            kind=tuple),
    Setting("allow_unauthenticated", False, "Serve without JWT checks on a non-loopback address (never in "
            "production).", section="security", kind=bool),
    Setting("jwks_cache_seconds", 300, "How long a fetched JWK Set is reused before it is fetched again (an "
            "unknown `kid` refetches sooner).", section="security", kind=int),
    Setting("jwt_leeway_seconds", 30, "Clock skew tolerated on `exp` and `iat`.", section="security",
            kind=int),
    Setting("jwt_max_lifetime_seconds", 3600, "Longest accepted `exp - iat` (bounds how long a used `jti` "
            "is kept in the store); an issuer may override it.", section="security", kind=int),
    Setting("jwt_max_bytes", 8192, "Longest bearer token accepted (bytes); a longer one is refused with 401 "
            "before it is decoded.", section="security", kind=int),
    Setting("smart_client_id", "sact-cds-ino2", "OAuth client id the INO2 form app (/apps/ino2/) is registered "
            "with at the EHR."),
    Setting("smart_issuers", (), "FHIR base URLs (`iss`) the INO2 form app accepts SMART launches from "
            "(comma-separated). Empty = loopback only (development).", kind=tuple),
    Setting("smart_session_seconds", 1800, "Life of an INO2 form app session (kept in the database, table "
            "`form_session`, shared by every replica).", kind=int),
    Setting("smart_session_key", "", "Secret (32+ characters, the same on every replica) that encrypts INO2 "
            "form sessions (access token, record extract) in the database. Empty = stored unencrypted, "
            "protected only by the database's own access control.", secret=True),
)
# fmt: on
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Issuer:
    """A trusted CDS client: its ``iss``, where its keys are and what it may sign with.

    ``jku`` lists the JWK Set URLs a token header may name; by default only ``jwks_url``.
    Keys are always read from ``jwks_url``/``jwks_file``, never from a token's ``jku``.
    """

    iss: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    jku: tuple[str, ...] = ()
    max_lifetime_seconds: int | None = None

    @classmethod
    def parse(cls, raw: Any, where: str, base: Path | None = None) -> Issuer:
        if not isinstance(raw, Mapping):
            raise SettingsError(f"each trusted issuer must be a table/object, got {raw!r}", field=where)
        unknown = set(raw) - {f.name for f in fields(cls)}
        if unknown:
            raise SettingsError(f"unknown issuer keys {sorted(unknown)}", field=where)
        iss = raw.get("iss")
        if not isinstance(iss, str) or not iss:
            raise SettingsError("issuer needs `iss`", field=where)
        url, file = raw.get("jwks_url"), raw.get("jwks_file")
        if bool(url) == bool(file):
            raise SettingsError(f"issuer {iss} needs exactly one of jwks_url, jwks_file", field=where)
        algs = tuple(raw.get("algorithms") or DEFAULT_ALGORITHMS)
        bad = [a for a in algs if a not in PERMITTED_ALGORITHMS]
        if bad:
            raise SettingsError(
                f"issuer {iss}: algorithms {bad} are not allowed (never 'none' or HMAC; "
                f"choose from {sorted(PERMITTED_ALGORITHMS)})",
                field=where,
            )
        jwks_file = Path(file) if file else None
        if jwks_file is not None and base is not None and not jwks_file.is_absolute():
            jwks_file = base / jwks_file
        jku = tuple(raw.get("jku") or ((url,) if url else ()))
        life = raw.get("max_lifetime_seconds")
        return cls(iss, url or None, jwks_file, algs, jku, int(life) if life is not None else None)


@dataclass(frozen=True)
class Settings:
    """The service's configuration, resolved once at start (see the module docstring)."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    data_dir: Path = Path("./data")
    database_url: str = ""
    knowledge_dirs: tuple[Path, ...] = field(default_factory=_default_knowledge_dirs)
    public_base_url: str = ""
    cors_origins: tuple[str, ...] = ("https://sandbox.cds-hooks.org",)
    docs: bool = True
    log_level: str = "INFO"
    log_format: str = "json"
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    max_request_bytes: int = 5_000_000
    request_read_timeout_seconds: float = 10.0
    keep_alive_timeout_seconds: float = 5.0
    fetch_timeout_seconds: float = 5.0
    fetch_concurrency: int = 10
    fetch_max_pages: int = 10
    fetch_deadline_seconds: float = 10.0
    fetch_max_bytes: int = 20_000_000
    fhir_server_allowlist: tuple[str, ...] = ()
    allow_http_fhir_server: bool = False
    trusted_issuers: tuple[Issuer, ...] = ()
    allow_unauthenticated: bool = False
    jwks_cache_seconds: int = 300
    jwt_leeway_seconds: int = 30
    jwt_max_lifetime_seconds: int = 3600
    smart_client_id: str = "sact-cds-ino2"
    smart_issuers: tuple[str, ...] = ()
    smart_session_seconds: int = 1800
    smart_session_key: str = ""
    jwt_max_bytes: int = 8192
    policy: SitePolicy = field(default_factory=SitePolicy)
    config_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{Path(self.data_dir) / 'audit.sqlite'}")
        _check(self)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={mask_url(v) if f.name == 'database_url' else '***' if f.name == 'smart_session_key' and v else v!r}"
            for f in fields(self)
            for v in [getattr(self, f.name)]
        )
        return f"Settings({shown})"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def ensure_data_dir(self) -> None:
        """Create ``data_dir`` when the audit store lives in it (the default)."""
        if self.database_url.startswith("sqlite:///") and not self.database_url.startswith(
            "sqlite:///:memory:"
        ):
            Path(self.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def mask_url(url: str) -> str:
    """Hide the password of a database URL: ``postgresql://u:***@h/db``."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


def _check(s: Settings) -> None:
    if not 0 < s.port < 65536:
        raise SettingsError(f"port must be 1-65535, got {s.port}", field="port")
    for name in (
        "workers",
        "fetch_concurrency",
        "fetch_max_pages",
        "fetch_max_bytes",
        "max_request_bytes",
        "jwt_max_bytes",
        "smart_session_seconds",
    ):
        if getattr(s, name) < 1:
            raise SettingsError(f"{name} must be at least 1", field=name)
    for name in (
        "fetch_timeout_seconds",
        "fetch_deadline_seconds",
        "request_read_timeout_seconds",
        "keep_alive_timeout_seconds",
    ):
        if getattr(s, name) <= 0:
            raise SettingsError(f"{name} must be positive", field=name)
    if s.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(f"unknown log level {s.log_level!r}", field="log_level")
    if s.log_format not in {"json", "text"}:
        raise SettingsError("log_format must be json or text", field="log_format")
    if bool(s.ssl_certfile) != bool(s.ssl_keyfile):
        raise SettingsError("ssl_certfile and ssl_keyfile go together", field="ssl_certfile")
    for entry in s.fhir_server_allowlist:
        if not re.match(r"^https?://[^/]+", entry):
            raise SettingsError(
                f"fhir_server_allowlist entry {entry!r} is not an absolute http(s) URL", field="fhir_server_allowlist"
            )
    if s.smart_session_key and len(s.smart_session_key) < 32:
        raise SettingsError("smart_session_key must be at least 32 characters (e.g. `openssl rand -base64 32`)",
                            field="smart_session_key")
    if s.public_base_url and not re.match(r"^https?://[^/]+", s.public_base_url):
        raise SettingsError("public_base_url must be an absolute http(s) URL", field="public_base_url")
    for name, why in s.policy.problems():  # HAZ-026: a typed value can still be unsafe
        raise SettingsError(
            f"site policy {name} {why}; set [policy] {name} or {ENV_PREFIX}POLICY_{name.upper()} "
            "within the allowed range (README, Site policies)",
            field=f"policy.{name}",
        )
    seen: set[str] = set()
    for issuer in s.trusted_issuers:
        bad = [a for a in issuer.algorithms if a not in PERMITTED_ALGORITHMS]
        if bad:
            raise SettingsError(
                f"issuer {issuer.iss}: algorithms {bad} are not allowed", field="trusted_issuers"
            )
        if issuer.iss in seen:
            raise SettingsError(f"issuer {issuer.iss} configured twice", field="trusted_issuers")
        seen.add(issuer.iss)


def load_settings(
    cli: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Resolve settings from CLI values, ``CDS_*`` variables, a TOML file and the defaults.

    ``cli`` holds only the options the user actually gave (None values are ignored).
    """
    env = os.environ if env is None else env
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    path = config_file or cli.pop("config_file", None) or env.get(ENV_PREFIX + "CONFIG") or None
    values: dict[str, Any] = {}
    policy: dict[str, Any] = {}
    if path:
        path = Path(path)
        values, policy = _read_file(path)
        values["config_file"] = path
    for s in SETTINGS:
        if s.env in env:
            values[s.name] = _coerce(s, env[s.env], f"environment variable {s.env}")
    for name in SitePolicy.help():
        key = f"{ENV_PREFIX}POLICY_{name.upper()}"
        if key in env:
            policy[name] = env[key]
    for name, value in cli.items():
        if name not in SETTINGS_BY_NAME:
            raise SettingsError(f"unknown setting {name}", field=name)
        values[name] = _coerce(SETTINGS_BY_NAME[name], value, f"option --{name.replace('_', '-')}")
    values["policy"] = _policy(policy)
    try:
        return Settings(**values)
    except TypeError as exc:  # pragma: no cover - a programming error in the table
        raise SettingsError(str(exc)) from exc


def _read_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}", field="--config") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}", field="--config") from exc
    unknown = set(data) - {"service", "security", "policy"}
    if unknown:
        raise SettingsError(f"{path}: unknown tables {sorted(unknown)} (use [service], [security], [policy])")
    base = path.resolve().parent
    values: dict[str, Any] = {}
    for section in ("service", "security"):
        table = data.get(section) or {}
        for key, raw in table.items():
            where = f"{path} [{section}] {key}"
            if section == "security" and key == "issuers":
                if not isinstance(raw, list):
                    raise SettingsError("[[security.issuers]] must be an array of tables", field=where)
                values["trusted_issuers"] = tuple(Issuer.parse(i, where, base) for i in raw)
                continue
            s = SETTINGS_BY_NAME.get(key)
            if s is None or s.section != section or s.name == "trusted_issuers":
                raise SettingsError(f"unknown setting {key!r} in [{section}]", field=where)
            value = _coerce(s, raw, where)
            if s.kind is Path and value is not None and not value.is_absolute():
                value = base / value
            if s.name == "knowledge_dirs":
                value = tuple(p if p.is_absolute() else base / p for p in value)
            values[s.name] = value
    return values, dict(data.get("policy") or {})


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _coerce(s: Setting, raw: Any, where: str) -> Any:
    """Turn a raw value (string from env/CLI, TOML value) into the setting's type."""
    try:
        if s.name == "trusted_issuers":
            items = json.loads(raw) if isinstance(raw, str) else raw
            if isinstance(items, Mapping):
                items = [items]
            if not isinstance(items, (list, tuple)):
                raise ValueError("expected a JSON array of issuer objects")
            return tuple(i if isinstance(i, Issuer) else Issuer.parse(i, where) for i in items)
        if s.kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError("expected true or false")
        if s.kind is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("expected an integer")
            return int(raw)
        if s.kind is float:
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        if s.kind is Path:
            return Path(str(raw)) if str(raw) else None
        if s.kind is tuple:
            if isinstance(raw, str):
                text = raw.strip()
                if text.startswith("["):
                    raw = json.loads(text)
                else:
                    sep = os.pathsep if s.name == "knowledge_dirs" else ","
                    raw = [p.strip() for p in text.split(sep) if p.strip()]
            if not isinstance(raw, (list, tuple)):
                raise ValueError("expected a list")
            return (
                tuple(Path(str(p)) for p in raw) if s.name == "knowledge_dirs" else tuple(str(p) for p in raw)
            )
        if not isinstance(raw, str):
            raise ValueError("expected a string")
        return raw
    except SettingsError:
        raise
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise SettingsError(f"bad value for {s.name}: {exc}", field=where) from exc


def _policy(raw: Mapping[str, Any]) -> SitePolicy:
    known = {f.name: f for f in fields(SitePolicy)}
    unknown = set(raw) - set(known)
    if unknown:
        raise SettingsError(
            f"unknown site policies {sorted(unknown)} (known: {sorted(known)})", field="policy"
        )
    values: dict[str, Any] = {}
    for name, value in raw.items():
        kind = type(known[name].default)
        try:
            values[name] = _coerce(Setting(f"policy_{name}", None, "", kind=kind), value, f"policy {name}")
        except SettingsError as exc:
            raise SettingsError(exc.message, field=f"policy.{name}") from exc
    try:
        return SitePolicy(**values)
    except ValueError as exc:
        raise SettingsError(f"bad site policy: {exc}", field="policy") from exc


def as_env(settings: Settings) -> dict[str, str]:
    """The ``CDS_*`` variables that recreate ``settings`` (for uvicorn worker processes)."""
    out: dict[str, str] = {}
    for s in SETTINGS:
        value = getattr(settings, s.name)
        if s.name == "trusted_issuers":
            out[s.env] = json.dumps([_issuer_json(i) for i in value])
        elif s.kind is tuple:
            sep = os.pathsep if s.name == "knowledge_dirs" else ","
            out[s.env] = sep.join(str(v) for v in value)
        elif s.kind is bool:
            out[s.env] = "true" if value else "false"
        elif value is None:
            out[s.env] = ""
        else:
            out[s.env] = str(value)
    for name, value in settings.policy.as_json().items():
        out[f"{ENV_PREFIX}POLICY_{name.upper()}"] = str(value)
    return out


def settings_markdown() -> str:
    """The configuration table for the README (regenerate it when the table changes)."""
    rows = ["| setting | environment | file | default | what it does |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        default = s.default
        if s.name == "knowledge_dirs":
            default = "bundled plan_definitions/, fhir_profiles/"
        elif s.name == "database_url":
            default = "sqlite:///<data_dir>/audit.sqlite"
        elif isinstance(default, tuple):
            default = ", ".join(default) or "(none)"
        file_key = "[[security.issuers]]" if s.name == "trusted_issuers" else f"[{s.section}] {s.name}"
        shown = f"`{default}`" if default not in ("", None) else "(empty)"
        rows.append(f"| {s.name} | `{s.env}` | `{file_key}` | {shown} | {_cell(s.help)} |")
    allowed = SitePolicy.allowed()
    for name, help in SitePolicy.help().items():
        default = getattr(SitePolicy(), name)
        rng = allowed[name]
        text = f"{help} Allowed: `{rng.text()}` ({rng.why})." if rng else f"{help} Allowed: no range set yet."
        rows.append(
            f"| policy.{name} | `{ENV_PREFIX}POLICY_{name.upper()}` | `[policy] {name}` | `{default}` | {_cell(text)} |"
        )
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _issuer_json(issuer: Issuer) -> dict[str, Any]:
    raw = dataclasses.asdict(issuer)
    raw["jwks_file"] = str(issuer.jwks_file) if issuer.jwks_file else None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in raw.items() if v is not None}


__all__ = sorted(
    [
        "Issuer",
        "SETTINGS",
        "Setting",
        "Settings",
        "SettingsError",
        "as_env",
        "load_settings",
        "mask_url",
        "settings_markdown",
    ]
)
