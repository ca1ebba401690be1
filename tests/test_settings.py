"""Settings: one table, precedence CLI > env > file > default, masked secrets, documented."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cds_service.cli import main
from cds_service.features import SitePolicy
from cds_service.settings import (
    SETTINGS,
    Issuer,
    Settings,
    SettingsError,
    as_env,
    load_settings,
)

DOCS = Path(__file__).resolve().parents[1] / "README.md"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sact.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_bind_loopback_8080_with_sqlite_in_the_data_dir() -> None:
    s = load_settings(env={})
    assert (s.host, s.port, s.workers) == ("127.0.0.1", 8080, 1)
    assert s.database_url == f"sqlite:///{Path('data') / 'audit.sqlite'}"
    assert s.fetch_timeout_seconds == 5.0 and s.fetch_concurrency == 10
    assert s.cors_origins == ("https://sandbox.cds-hooks.org",)
    assert s.trusted_issuers == () and not s.allow_unauthenticated
    assert s.policy == SitePolicy()
    assert s.knowledge_dirs and all(isinstance(p, Path) for p in s.knowledge_dirs)


def test_cli_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    config = write(tmp_path, '[service]\nport = 9001\nhost = "127.0.0.2"\nlog_level = "DEBUG"\n')
    env = {"CDS_PORT": "9002", "CDS_HOST": "127.0.0.3"}
    s = load_settings({"port": 9003}, env=env, config_file=config)
    assert s.port == 9003  # CLI
    assert s.host == "127.0.0.3"  # env over file
    assert s.log_level == "DEBUG"  # file over default
    assert s.workers == 1  # default
    assert s.config_file == config


def test_the_config_file_can_come_from_cds_config(tmp_path: Path) -> None:
    config = write(tmp_path, "[service]\nport = 9100\n")
    assert load_settings(env={"CDS_CONFIG": str(config)}).port == 9100


def test_file_tables_service_security_issuers_and_policy(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text('{"keys": []}')
    config = write(
        tmp_path,
        """
[service]
data_dir = "state"
cors_origins = ["https://sandbox.cds-hooks.org", "https://ehr.example.org"]
fetch_timeout_seconds = 2.5
public_base_url = "https://cds.example.org"

[security]
jwks_cache_seconds = 60

[[security.issuers]]
iss = "https://sandbox.cds-hooks.org"
jwks_url = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
algorithms = ["ES384"]

[[security.issuers]]
iss = "https://crd.example.org"
jwks_file = "keys.json"
algorithms = ["RS256"]
max_lifetime_seconds = 90000

[policy]
azole_window_days = 60
asciminib_counts_for_ino2 = "no"
""",
    )
    s = load_settings(env={}, config_file=config)
    assert s.data_dir == tmp_path / "state"
    assert s.database_url == f"sqlite:///{tmp_path / 'state' / 'audit.sqlite'}"
    assert s.cors_origins == ("https://sandbox.cds-hooks.org", "https://ehr.example.org")
    assert s.fetch_timeout_seconds == 2.5 and s.jwks_cache_seconds == 60
    sandbox, crd = s.trusted_issuers
    assert sandbox == Issuer(
        "https://sandbox.cds-hooks.org",
        jwks_url="https://sandbox.cds-hooks.org/.well-known/jwks.json",
        algorithms=("ES384",),
        jku=("https://sandbox.cds-hooks.org/.well-known/jwks.json",),
    )
    assert (
        crd.jwks_file == tmp_path / "keys.json"
        and crd.algorithms == ("RS256",)
        and crd.max_lifetime_seconds == 90000
    )
    assert s.policy.azole_window_days == 60 and s.policy.asciminib_counts_for_ino2 == "no"


def test_env_issuers_are_a_json_array_and_policies_use_cds_policy_prefix() -> None:
    env = {
        "CDS_TRUSTED_ISSUERS": '[{"iss": "https://sandbox.cds-hooks.org", '
        '"jwks_url": "https://sandbox.cds-hooks.org/.well-known/jwks.json"}]',
        "CDS_POLICY_AZOLE_WINDOW_DAYS": "70",
        "CDS_POLICY_BSA_DOSE_TOLERANCE_PERCENT": "7.5",
        "CDS_CORS_ORIGINS": "https://a.example, https://b.example",
        "CDS_ALLOW_UNAUTHENTICATED": "yes",
    }
    s = load_settings(env=env)
    assert s.trusted_issuers[0].algorithms == ("ES384", "RS384")
    assert s.policy.azole_window_days == 70 and s.policy.bsa_dose_tolerance_percent == 7.5
    assert s.cors_origins == ("https://a.example", "https://b.example")
    assert s.allow_unauthenticated is True


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CDS_PORT": "eighty"}, "port"),
        ({"CDS_PORT": "70000"}, "port"),
        ({"CDS_FETCH_CONCURRENCY": "0"}, "fetch_concurrency"),
        ({"CDS_ALLOW_UNAUTHENTICATED": "maybe"}, "allow_unauthenticated"),
        ({"CDS_LOG_LEVEL": "LOUD"}, "log_level"),
        ({"CDS_TRUSTED_ISSUERS": "not json"}, "trusted_issuers"),
        (
            {"CDS_TRUSTED_ISSUERS": '[{"iss": "x", "jwks_url": "https://x", "algorithms": ["HS256"]}]'},
            "HS256",
        ),
        ({"CDS_TRUSTED_ISSUERS": '[{"iss": "x", "jwks_url": "https://x", "algorithms": ["none"]}]'}, "none"),
        ({"CDS_TRUSTED_ISSUERS": '[{"iss": "x"}]'}, "jwks_url"),
        ({"CDS_POLICY_AZOLE_WINDOW_DAYS": "soon"}, "azole_window_days"),
        ({"CDS_PUBLIC_BASE_URL": "cds.example.org"}, "public_base_url"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env=env)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[service]\nprot = 1\n", "prot"),
        ("[servcie]\nport = 1\n", "servcie"),
        ("[service\nport = 1\n", "not valid TOML"),
        ("[security]\nhost = '0.0.0.0'\n", "host"),
        ("[policy]\nazole_days = 3\n", "azole_days"),
        ("[[security.issuers]]\niss = 'x'\njwks_url = 'https://x'\njwks_file = 'k.json'\n", "exactly one"),
    ],
)
def test_a_bad_config_file_is_an_error_naming_what_to_fix(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env={}, config_file=write(tmp_path, text))


def test_a_missing_config_file_is_an_error() -> None:
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(env={}, config_file="/nonexistent/sact.toml")


@pytest.fixture(autouse=True)
def _keep_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` configures process-wide logging; keep pytest's handlers in place."""
    import cds_service.api.logging

    monkeypatch.setattr(cds_service.api.logging, "configure_logging", lambda *a, **kw: None)


def test_the_cli_turns_bad_config_into_a_message_and_a_nonzero_exit(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--config", str(write(tmp_path, "[service]\nport = 'x'\n"))])
    assert result.exit_code != 0
    assert "bad configuration" in result.output and "port" in result.output


def test_database_password_is_masked_in_repr() -> None:
    s = Settings(database_url="postgresql+psycopg://cds:hunter2@db.example.org/audit")
    assert "hunter2" not in repr(s)
    assert "postgresql+psycopg://cds:***@db.example.org/audit" in repr(s)


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


def test_as_env_recreates_the_same_settings_for_worker_processes(tmp_path: Path) -> None:
    s = Settings(
        host="127.0.0.1",
        port=9999,
        database_url="sqlite://",
        cors_origins=("*",),
        trusted_issuers=(
            Issuer(
                "https://i.example",
                jwks_url="https://i.example/jwks",
                algorithms=("ES384",),
                jku=("https://i.example/jwks",),
            ),
        ),
        policy=SitePolicy(azole_window_days=90),
        knowledge_dirs=(tmp_path,),
    )
    assert load_settings(env=as_env(s)) == s


def test_every_setting_and_policy_is_documented_in_the_readme() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [s.name for s in SETTINGS if not re.search(rf"`{s.env}`", text) or s.name not in text]
    missing += [f"CDS_POLICY_{n.upper()}" for n in SitePolicy.help() if f"CDS_POLICY_{n.upper()}" not in text]
    missing += [v for v in ("CDS_CONFIG", "[[security.issuers]]", "[policy]") if v not in text]
    assert not missing, f"undocumented in README.md: {missing}"


# -- `cds-service serve`: settings resolved and knowledge checked before binding ----------


def test_serve_refuses_bad_knowledge_before_binding_and_lists_the_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("must not bind"))
    (tmp_path / "PlanDefinition-Broken.json").write_text('{"resourceType": "PlanDefinition", "id": ')
    result = CliRunner().invoke(
        main, ["serve", "--knowledge", str(tmp_path)], env={"CDS_DATABASE_URL": "sqlite://"}
    )
    assert result.exit_code != 0
    assert "PlanDefinition-Broken.json" in result.output and "refusing to start" in result.output


def test_serve_runs_uvicorn_with_the_resolved_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    import cds_service.api

    ran: dict[str, Any] = {}
    monkeypatch.setattr(cds_service.api, "build_engine", lambda settings: "engine")
    monkeypatch.setattr(cds_service.api, "create_app", lambda settings, engine: ("app", settings, engine))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(app=app, **kw))
    result = CliRunner().invoke(
        main, ["serve", "--port", "8181"], env={"CDS_DATABASE_URL": "sqlite://", "CDS_HOST": "127.0.0.2"}
    )
    assert result.exit_code == 0, result.output
    assert (ran["host"], ran["port"]) == ("127.0.0.2", 8181)
    assert ran["app"][1].port == 8181 and ran["access_log"] is False
    assert ran["app"][2] == "engine"  # the knowledge loaded before binding is the one served


def test_serve_with_workers_hands_the_settings_to_each_worker_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    import uvicorn


    ran: dict[str, Any] = {}
    monkeypatch.setattr(
        os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    )  # serve sets CDS_*
    import cds_service.api

    monkeypatch.setattr(cds_service.api, "build_engine", lambda settings: "engine")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(app=app, env=dict(os.environ), **kw))
    import cds_service.commands._workers as workers  # the platform has no SO_REUSEPORT: uvicorn's workers

    monkeypatch.setattr(workers, "reuseport_supported", lambda: False)
    result = CliRunner().invoke(
        main,
        ["serve", "--workers", "3", "--port", "8182"],
        env={"CDS_DATABASE_URL": "sqlite://", "CDS_POLICY_AZOLE_WINDOW_DAYS": "80"},
    )
    assert result.exit_code == 0, result.output
    assert ran["app"] == "cds_service.api:app_from_env" and ran["factory"] is True and ran["workers"] == 3
    worker = load_settings(env=ran["env"])
    assert worker.port == 8182 and worker.workers == 3 and worker.policy.azole_window_days == 80


def test_serve_with_workers_forks_reuseport_workers_with_the_resolved_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    import cds_service.api
    import cds_service.commands._workers as workers

    ran: dict[str, Any] = {}
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("CDS_")})
    monkeypatch.setattr(cds_service.api, "build_engine", lambda settings: "engine")
    monkeypatch.setattr(cds_service.api, "create_app", lambda settings, engine: ran.update(settings=settings,
                                                                                          engine=engine) or "app")
    monkeypatch.setattr(cds_service.api.app, "tune_gc", lambda: None)

    def run_workers(make_app: Any, n: int, host: str, port: int, **kw: Any) -> int:
        ran.update(app=make_app(), workers=n, host=host, port=port, **kw)
        return 0

    monkeypatch.setattr(workers, "run_workers", run_workers)
    result = CliRunner().invoke(
        main,
        ["serve", "--workers", "3", "--port", "8182"],
        env={"CDS_DATABASE_URL": "sqlite://", "CDS_POLICY_AZOLE_WINDOW_DAYS": "70"},
    )
    assert result.exit_code == 0, result.output
    assert ran["app"] == "app" and ran["engine"] == "engine"  # the knowledge compiled once, before the fork
    assert ran["workers"] == 3 and ran["port"] == 8182 and ran["host"] == "127.0.0.1"
    assert ran["settings"].policy.azole_window_days == 70


def test_an_unusable_database_url_stops_the_start_with_a_message() -> None:
    from _fakes import FakeEngine

    from cds_service.api import create_app

    with pytest.raises(SettingsError, match="database_url"):
        create_app(Settings(database_url="nosuchdialect://u:pw@h/db", knowledge_dirs=()), engine=FakeEngine())


# -- site policy ranges (HAZ-026): a value of the right type can still be unsafe ----------


def test_every_site_policy_has_a_documented_allowed_range_holding_its_default() -> None:
    allowed = SitePolicy.allowed()
    assert set(allowed) == set(SitePolicy.help())
    for name, rng in allowed.items():
        assert rng is not None, f"{name}: give the policy an allowed range (HAZ-026)"
        assert rng.why, f"{name}: the range needs its reason"
        assert rng.problem(getattr(SitePolicy(), name)) is None, f"{name}: default outside its range"
    assert SitePolicy().problems() == []
    text = DOCS.read_text(encoding="utf-8")
    undocumented = [n for n, r in allowed.items() if r and f"Allowed: `{r.text()}`".replace("|", "\\|") not in text]
    assert not undocumented, f"README lacks the allowed range of {undocumented} (run `cds-service readme`)"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CDS_POLICY_BSA_DOSE_TOLERANCE_PERCENT": "50"}, "bsa_dose_tolerance_percent"),
        ({"CDS_POLICY_BSA_DOSE_TOLERANCE_PERCENT": "0"}, "bsa_dose_tolerance_percent"),
        ({"CDS_POLICY_BSA_DOSE_TOLERANCE_PERCENT": "10.01"}, "bsa_dose_tolerance_percent"),
        ({"CDS_POLICY_AZOLE_WINDOW_DAYS": "0"}, "azole_window_days"),
        ({"CDS_POLICY_AZOLE_WINDOW_DAYS": "55"}, "azole_window_days"),
        ({"CDS_POLICY_BSA_MAX_AGE_DAYS": "365"}, "bsa_max_age_days"),
        ({"CDS_POLICY_LAB_MAX_AGE_DAYS": "-1"}, "lab_max_age_days"),
        ({"CDS_POLICY_LAB_MAX_AGE_DAYS": "30"}, "lab_max_age_days"),
        ({"CDS_POLICY_RECENT_ADMINISTRATION_DAYS": "0"}, "recent_administration_days"),
        ({"CDS_POLICY_CHILD_AGE_LIMIT_YEARS": "25"}, "child_age_limit_years"),
        ({"CDS_POLICY_ECOG_MAX_MET": "3"}, "ecog_max_met"),
        ({"CDS_POLICY_LANSKY_KARNOFSKY_MET_MIN": "40"}, "lansky_karnofsky_met_min"),
        ({"CDS_POLICY_LANSKY_KARNOFSKY_UNMET_BELOW": "80"}, "lansky_karnofsky_unmet_below"),
        ({"CDS_POLICY_LANSKY_KARNOFSKY_MET_MIN": "60", "CDS_POLICY_LANSKY_KARNOFSKY_UNMET_BELOW": "70"},
         "lansky_karnofsky_unmet_below"),
        ({"CDS_POLICY_ASCIMINIB_COUNTS_FOR_INO2": "maybe"}, "asciminib_counts_for_ino2"),
    ],
)
def test_a_site_policy_outside_its_allowed_range_is_refused_naming_it(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named) as caught:
        load_settings(env=env)
    assert caught.value.field == f"policy.{named}"
    assert "allowed range" in caught.value.message


def test_a_site_policy_at_the_edge_of_its_range_is_accepted() -> None:
    s = load_settings(env={"CDS_POLICY_BSA_DOSE_TOLERANCE_PERCENT": "10", "CDS_POLICY_AZOLE_WINDOW_DAYS": "56",
                           "CDS_POLICY_LAB_MAX_AGE_DAYS": "0", "CDS_POLICY_CHILD_AGE_LIMIT_YEARS": "16"})
    assert (s.policy.bsa_dose_tolerance_percent, s.policy.azole_window_days) == (10.0, 56)
    assert (s.policy.lab_max_age_days, s.policy.child_age_limit_years) == (0, 16)


def test_serve_refuses_an_out_of_range_policy_from_the_file_with_a_message_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: pytest.fail("must not bind"))
    path = write(tmp_path, "[policy]\nbsa_dose_tolerance_percent = 50.0\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(path)], env={"CDS_DATABASE_URL": "sqlite://"})
    assert result.exit_code == 1 and not isinstance(result.exception, SettingsError)
    assert "bad configuration" in result.output and "bsa_dose_tolerance_percent" in result.output
    assert "(0, 10]" in result.output and "Traceback" not in result.output


def test_validate_reports_an_out_of_range_policy_and_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, "[policy]\nazole_window_days = 14\n")
    result = CliRunner().invoke(main, ["validate", "--config", str(path)], env={"CDS_DATABASE_URL": "sqlite://"})
    assert result.exit_code == 1
    assert "policy.azole_window_days" in result.output and "[56, 365]" in result.output
    assert "Traceback" not in result.output
