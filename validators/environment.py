"""Which environment variables a project or job may set for its runs.

The command rules decide which options a run gets; environment variables could change the same
settings behind their back (dbt 1.11 reads ``DBT_ENGINE_PROFILES_DIR`` before any flag, SQLMesh
takes whole configuration sections from ``SQLMESH__…``), or change what the interpreter, the
dynamic loader, the C library, TLS or git load and where they connect. So a name must look like
an ordinary variable name, and names that configure those are refused, each with its reason.
Everything else (credentials read by ``env_var()`` in profiles, a warehouse name, ``TZ``) is the
project's business.

Names are compared in upper case: SQLMesh reads ``sqlmesh__…`` as well as ``SQLMESH__…``, and
proxies are read in both cases, so no spelling slips through. The two dbt prefixes that are
allowed must be written exactly, as dbt only recognises them in upper case.

``tests/unit/test_env_allowlist.py`` reads the names dbt and SQLMesh consult from their installed
source and checks that each one is decided here: refused, or listed in ``CONSULTED_AND_ALLOWED``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_VARIABLES = 200
MAX_VALUE_LENGTH = 32_768

ALLOWED_DBT_PREFIXES = ("DBT_ENV_CUSTOM_ENV_", "DBT_ENV_SECRET_")
"""dbt's own namespaces for users: custom values copied into run metadata, and secrets that dbt
only lets profiles and packages read (and scrubs from its logs)."""

_USE_INSTEAD_FOR_DBT = (
    "give the matching option in the command instead (DBT_TARGET is --target), or name the "
    "variable DBT_ENV_SECRET_<NAME> (secrets for profiles.yml) or DBT_ENV_CUSTOM_ENV_<NAME>"
)

# Exact names (compared in upper case) with the reason they are refused.
REFUSED_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "PATH": "chooses which programs run; runyard sets it",
        "HOME": (
            "moves the home folder, where dbt looks for profiles.yml, SQLMesh keeps "
            "~/.sqlmesh and DuckDB loads extensions; runyard sets it"
        ),
        "TMPDIR": "moves temporary files; runyard gives each run its own temporary folder",
        "TMP": "moves temporary files; runyard gives each run its own temporary folder",
        "TEMP": "moves temporary files; runyard gives each run its own temporary folder",
        "SHELL": "chooses the shell that programs start",
        "ENV": "names a file every POSIX shell runs at start",
        "BASH_ENV": "names a file bash runs at start",
        "IFS": "changes how shells split words",
        "CDPATH": "changes where shells change directory to",
        "PROMPT_COMMAND": "runs a command in interactive bash",
        "PS4": "is expanded (and can run commands) when bash traces",
        "GCONV_PATH": "makes the C library load character-set converters from another folder",
        "LOCPATH": "makes the C library load locale data from another folder",
        "NLSPATH": "makes the C library load message catalogues from another path",
        "GLIBC_TUNABLES": "tunes the C library's allocator and loader",
        "HOSTALIASES": "makes host-name lookups read aliases from a file",
        "RESOLV_HOST_CONF": "makes host-name lookups read another configuration file",
        "RES_OPTIONS": "changes how host names are resolved",
        "LOCALDOMAIN": "changes how host names are resolved",
        "TZDIR": "makes the C library read time-zone files from another folder",
        "NO_PROXY": "changes which hosts bypass the proxy",
        "SSL_CERT_FILE": "replaces the certificates TLS trusts, so connections can be intercepted",
        "SSL_CERT_DIR": "replaces the certificates TLS trusts, so connections can be intercepted",
        "REQUESTS_CA_BUNDLE": "replaces the certificates TLS trusts, so connections can be "
        "intercepted",
        "CURL_CA_BUNDLE": "replaces the certificates TLS trusts, so connections can be intercepted",
        "SSLKEYLOGFILE": "makes Python write TLS session keys to a file",
        "BROWSER": "names a program Python's webbrowser module runs",
        "EDITOR": "names a program tools may start",
        "VISUAL": "names a program tools may start",
        "PAGER": "names a program tools may start",
        "SPARK_CONF_DIR": "makes Spark load its configuration from another folder",
    }
)

# Prefixes (compared in upper case) with the reason they are refused. The first that matches
# gives the reason, so the more specific ones come first.
REFUSED_PREFIXES: tuple[tuple[str, str], ...] = (
    ("RUNYARD_", "configures runyard itself"),
    (
        "DBT_ENGINE_",
        "dbt 1.11 reads DBT_ENGINE_* before its command-line defaults (DBT_ENGINE_PROFILES_DIR, "
        "DBT_ENGINE_PROJECT_DIR, DBT_ENGINE_TARGET_PATH ...), so it would walk around the "
        "command rules",
    ),
    (
        "DBT_ENV_PRIVATE_",
        "is dbt's namespace for values that must stay hidden from the project; runyard does not "
        "set them through jobs",
    ),
    (
        "DBT_",
        "sets dbt options and paths (DBT_PROFILES_DIR, DBT_TARGET_PATH, DBT_STATE ...) that the "
        "command rules decide",
    ),
    (
        "SQLMESH_",
        "configures SQLMesh: SQLMESH__<SECTION>__… overrides any part of the project's "
        "configuration (gateways, connections, state), SQLMESH_DOTENV_PATH loads another .env "
        "file, SQLMESH_HOME moves its home",
    ),
    ("LD_", "changes which shared libraries the dynamic loader loads (LD_PRELOAD ...)"),
    ("DYLD_", "changes which shared libraries the dynamic loader loads"),
    ("MALLOC_", "tunes the C library's allocator"),
    (
        "PYTHON",
        "changes how Python starts: what it imports (PYTHONPATH, PYTHONSTARTUP), its home and "
        "its warnings",
    ),
    ("GIT_", "configures git (GIT_CONFIG_*, GIT_SSH_COMMAND ...), which can run programs"),
    ("SSH_", "configures ssh (SSH_ASKPASS runs a program, SSH_AUTH_SOCK uses another agent)"),
    ("XDG_", "moves the folders where tools (git, DuckDB ...) read their configuration"),
    ("OPENSSL_", "makes OpenSSL load another configuration, which can load shared libraries"),
    ("KRB5", "configures Kerberos, whose configuration can load shared libraries"),
    (
        "DUCKDB_",
        "configures DuckDB's internals (DUCKDB_JE_MALLOC_CONF can make its allocator write "
        "files anywhere)",
    ),
    ("KUBERNETES_", "tells Kubernetes clients where the cluster's API is"),
    ("GITHUB_", "configures SQLMesh's GitHub bot, which reads and writes the files it names"),
    ("BASH_FUNC_", "defines bash functions"),
)

_PROXY_REASON = "sends the run's HTTP connections through a proxy, which can intercept them"

CONSULTED_AND_ALLOWED: Mapping[str, str] = MappingProxyType(
    {
        "AWS_ACCESS_KEY_ID": "a credential for the project's own storage",
        "AWS_SECRET_ACCESS_KEY": "a credential for the project's own storage",
        "AWS_DEFAULT_REGION": "the region of the project's own storage",
        "DO_NOT_TRACK": "turns dbt's usage tracking off",
        "TERM": "the terminal type: colours only",
        "GRPC_VERBOSITY": "how much gRPC logs",
        "MAX_FORK_WORKERS": "how many processes SQLMesh forks to load models",
        "DATABRICKS_RUNTIME_VERSION": "only tells SQLMesh it runs on Databricks",
        "CONFIG": "read only by sqlmesh ui, which runyard never runs",
        "GATEWAY": "read only by sqlmesh ui, which runyard never runs",
        "PROJECT_PATH": "read only by sqlmesh ui, which runyard never runs",
        "UI_MODE": "read only by sqlmesh ui, which runyard never runs",
        "PYTEST_CURRENT_TEST": "read only by dbt's event code to notice it runs under pytest",
        "POSTGRES_TEST_DATABASE": "read only by dbt's own test fixtures",
        "POSTGRES_TEST_PASS": "read only by dbt's own test fixtures",
        "POSTGRES_TEST_PORT": "read only by dbt's own test fixtures",
        "POSTGRES_TEST_USER": "read only by dbt's own test fixtures",
    }
)
"""Names the installed dbt or SQLMesh read that a job may set, and why that is harmless. Names
with the allowed dbt prefixes (``ALLOWED_DBT_PREFIXES``) are allowed too."""


@dataclass(frozen=True, slots=True)
class EnvProblem:
    """Why one variable (or the set of them, when ``name`` is empty) is refused."""

    name: str
    reason: str


def name_problem(name: str) -> str | None:
    """Why a run may not set a variable of this name, or None when it may."""
    if not NAME_PATTERN.match(name):
        return (
            "is not a variable name runyard accepts: use letters, digits and underscores, "
            "not starting with a digit, at most 128 characters"
        )
    if name.startswith(ALLOWED_DBT_PREFIXES):
        return None
    upper = name.upper()
    reason = REFUSED_NAMES.get(upper)
    if reason is None and (upper.endswith("_PROXY") or upper == "PROXY"):
        reason = _PROXY_REASON
    if reason is None:
        reason = next((why for prefix, why in REFUSED_PREFIXES if upper.startswith(prefix)), None)
    if reason is None:
        return None
    if upper.startswith("DBT_"):
        return f"is refused: it {reason}; {_USE_INSTEAD_FOR_DBT}"
    return f"is refused: it {reason}"


def is_decided(name: str) -> bool:
    """Whether this module takes an explicit decision on a name an engine reads: refused, or
    listed as allowed. (Any other name is allowed by default, as the project's own.)"""
    return (
        name_problem(name) is not None
        or name in CONSULTED_AND_ALLOWED
        or name.startswith(ALLOWED_DBT_PREFIXES)
    )


def value_problem(name: str, value: str) -> str | None:
    """Why this value is refused for an allowed name, or None.

    Locale and time-zone names are allowed (``LANG=de_DE.UTF-8``, ``TZ=Europe/Berlin``), but the
    C library reads a file when they hold a path, so paths there are refused.
    """
    if len(value) > MAX_VALUE_LENGTH or "\x00" in value:
        return f"values have at most {MAX_VALUE_LENGTH:,} characters and no NUL byte"
    upper = name.upper()
    if (upper in ("LANG", "LANGUAGE") or upper.startswith("LC_")) and "/" in value:
        return (
            "locale names have no '/': with one, the C library reads locale files from that "
            "path; use a name such as en_US.UTF-8"
        )
    if upper == "TZ" and (value.lstrip(":").startswith("/") or ".." in value.split("/")):
        return (
            "a time zone is a name such as Europe/Berlin, not a path: with a path the C "
            "library reads that file"
        )
    return None


def check_environment(env: Mapping[str, str]) -> list[EnvProblem]:
    """Every problem with a project's or job's environment, at most one per variable."""
    problems: list[EnvProblem] = []
    if len(env) > MAX_VARIABLES:
        problems.append(EnvProblem("", f"at most {MAX_VARIABLES} environment variables"))
    for name, value in env.items():
        problem = name_problem(name)
        if problem is None:
            problem = value_problem(name, value)
        if problem is not None:
            problems.append(EnvProblem(name, problem))
    return problems


def permitted(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` today's rules accept. Records saved before a rule existed
    (a job's environment, a run's snapshot) may still carry a refused name; a run never
    receives it, whatever the record says."""
    return {
        name: value
        for name, value in env.items()
        if name_problem(name) is None and value_problem(name, value) is None
    }
