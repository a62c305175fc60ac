"""Dockerfile, .dockerignore and docker-compose.yml, checked by reading them (no Docker engine).

Compose's `${VAR:-default}` / `${VAR:?message}` are resolved here the way Compose does, so the
URLs, passwords and ports are compared as the containers would see them.
"""

import fnmatch
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from app.cli import main
from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "api", "worker")
DATA_DIR = "/data"
API_PORT = "8000"

# $$ | ${NAME} | ${NAME:-default} | ${NAME-default} | ${NAME:?message} | ${NAME?message} | $NAME
_VAR = re.compile(
    r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)"
)


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution, applied to every string in a loaded document."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg")
        found = env.get(name)
        unset = found is None or (op is not None and op.startswith(":") and found == "")
        if op in (":-", "-") and unset:
            return arg
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg}")
        return found or ""

    return _VAR.sub(substitute, value)


def load_compose(env: dict[str, str]) -> dict[str, Any]:
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return interpolate(raw, env)


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return load_compose({"TRAINSERVE_API_KEY": "test-admin-key"})["services"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose({"TRAINSERVE_API_KEY": "test-admin-key"})


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path → (source, read_only)."""
    found = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            found[target] = (source, "ro" in "".join(mode).split(","))
        else:
            found[volume["target"]] = (volume.get("source", ""), bool(volume.get("read_only")))
    return found


def healthcheck_text(service: dict[str, Any]) -> str:
    check = service.get("healthcheck") or {}
    if check.get("disable"):
        return ""
    test = check.get("test", "")
    return " ".join(argv(test)) if isinstance(test, list) else test


def resolve_cli(args: list[str]) -> click.Command:
    """The click command that `trainserve ARGS` runs; its options must parse."""
    assert args[0] == "trainserve", args
    command: click.Command = main
    rest = args[1:]
    while isinstance(command, click.Group):
        assert rest, f"{args}: names a group, not a command"
        sub = command.commands.get(rest[0])
        assert sub is not None, f"{args}: no command {rest[0]!r} in {sorted(command.commands)}"
        command, rest = sub, rest[1:]
    command.make_context(command.name or "", list(rest))  # raises on unknown options or values
    return command


# -- compose: services, image, commands ----------------------------------------------------


def test_the_stack_has_its_services(services: dict[str, Any]) -> None:
    assert {"postgres", "redis", "minio", "bucket", "migrate", "api", "worker"} <= set(services)


def test_migrate_api_and_worker_run_one_image(services: dict[str, Any]) -> None:
    images = [services[name].get("image") for name in APP_SERVICES]
    builds = [services[name].get("build") for name in APP_SERVICES]
    assert images[0] and images.count(images[0]) == len(images), images
    assert builds[0] and builds.count(builds[0]) == len(builds), builds
    build = builds[0] if isinstance(builds[0], dict) else {"context": builds[0]}
    assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("migrate", ["trainserve", "db", "upgrade"]),
        ("api", ["trainserve", "api"]),
        ("worker", ["trainserve", "worker"]),
    ],
)
def test_each_app_service_runs_its_trainserve_command(
    services: dict[str, Any], name: str, expected: list[str]
) -> None:
    args = argv(services[name]["command"])
    assert args[: len(expected)] == expected
    resolve_cli(args)


def test_api_listens_on_all_interfaces_at_the_published_port(services: dict[str, Any]) -> None:
    api = services["api"]
    args = argv(api["command"])
    assert flag_value(args, "--host") == "0.0.0.0"
    assert flag_value(args, "--port") == API_PORT
    assert f"{API_PORT}:{API_PORT}" in [str(port) for port in api.get("ports", [])]


def test_cli_check_rejects_what_click_would_reject() -> None:
    with pytest.raises(AssertionError):
        resolve_cli(["trainserve", "serve"])
    with pytest.raises(AssertionError):
        resolve_cli(["trainserve", "db"])
    with pytest.raises(click.UsageError):
        resolve_cli(["trainserve", "api", "--hots", "0.0.0.0"])


# -- compose: start-up order -----------------------------------------------------------------


def test_migrate_waits_for_a_healthy_postgres_and_runs_once(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert depends_on(migrate).get("postgres") == "service_healthy"
    assert migrate.get("restart") == "no"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_api_and_worker_wait_for_the_schema_and_the_broker(
    services: dict[str, Any], name: str
) -> None:
    deps = depends_on(services[name])
    assert deps.get("migrate") == "service_completed_successfully"
    assert deps.get("redis") == "service_healthy"


@pytest.mark.parametrize("name", ["postgres", "redis", "minio", "api"])
def test_services_others_wait_on_have_a_healthcheck(services: dict[str, Any], name: str) -> None:
    assert healthcheck_text(services[name]).strip()


def test_healthchecks_probe_the_right_thing(services: dict[str, Any]) -> None:
    assert "pg_isready" in healthcheck_text(services["postgres"])
    redis_check = healthcheck_text(services["redis"])
    assert "redis-cli" in redis_check and "PONG" in redis_check
    assert f"127.0.0.1:{API_PORT}/readyz" in healthcheck_text(services["api"])


# -- compose: redis and postgres -------------------------------------------------------------


def test_redis_keeps_messages_and_needs_a_password(services: dict[str, Any]) -> None:
    args = argv(services["redis"]["command"])
    assert args[0] == "redis-server"
    assert flag_value(args, "--appendonly") == "yes"
    assert flag_value(args, "--maxmemory-policy") == "noeviction"
    password = flag_value(args, "--requirepass")
    assert password
    # The healthcheck's redis-cli authenticates with the same password.
    assert environment(services["redis"]).get("REDISCLI_AUTH") == password


@pytest.mark.parametrize("name", ["postgres", "redis", "minio"])
def test_backing_services_publish_no_ports(services: dict[str, Any], name: str) -> None:
    assert not services[name].get("ports")
    assert services[name].get("network_mode") != "host"


# -- compose: environment --------------------------------------------------------------------


def test_app_services_share_one_environment(services: dict[str, Any]) -> None:
    envs = [environment(services[name]) for name in APP_SERVICES]
    assert envs[0] and envs[0] == envs[1] == envs[2]


# What boto3 reads itself for the S3 store (app/storage/s3.py).
AWS_NAMES = {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}


def test_environment_names_are_real_settings(services: dict[str, Any]) -> None:
    for key in environment(services["api"]):
        if key in AWS_NAMES:
            continue
        assert key.startswith("TRAINSERVE_"), key
        assert key.removeprefix("TRAINSERVE_").lower() in Settings.model_fields, key


def test_database_url_points_at_the_postgres_service(services: dict[str, Any]) -> None:
    url = urlsplit(environment(services["api"])["TRAINSERVE_DATABASE_URL"])
    postgres = environment(services["postgres"])
    assert url.scheme == "postgresql+psycopg"
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert url.username == postgres["POSTGRES_USER"]
    assert url.password == postgres["POSTGRES_PASSWORD"]
    assert url.path == "/" + postgres["POSTGRES_DB"]


def test_broker_url_points_at_redis_with_its_password(services: dict[str, Any]) -> None:
    url = urlsplit(environment(services["api"])["TRAINSERVE_BROKER_URL"])
    assert url.scheme == "redis"
    assert (url.hostname, url.port) == ("redis", 6379)
    assert url.password == flag_value(argv(services["redis"]["command"]), "--requirepass")


def test_passwords_follow_the_environment() -> None:
    env = {"TRAINSERVE_API_KEY": "k", "POSTGRES_PASSWORD": "pg-secret", "REDIS_PASSWORD": "r-sec"}
    services = load_compose(env)["services"]
    app_env = environment(services["worker"])
    assert urlsplit(app_env["TRAINSERVE_DATABASE_URL"]).password == "pg-secret"
    assert urlsplit(app_env["TRAINSERVE_BROKER_URL"]).password == "r-sec"
    assert app_env["TRAINSERVE_API_KEY"] == "k"


def test_the_api_key_is_required() -> None:
    with pytest.raises(MissingVariable, match="TRAINSERVE_API_KEY"):
        load_compose({})


# -- compose: GPU, the store, what is shared -------------------------------------------------------


def test_worker_reserves_an_nvidia_gpu(services: dict[str, Any]) -> None:
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        device.get("driver") == "nvidia"
        and "gpu" in device.get("capabilities", [])
        and (device.get("count") in (1, "all") or device.get("device_ids"))
        for device in devices
    ), devices


def test_api_and_worker_share_only_the_store_and_base_models(compose: dict[str, Any]) -> None:
    """Each its own DATA_DIR, as on separate hosts; artifacts go through the store."""
    services = compose["services"]
    api, worker = mounts(services["api"]), mounts(services["worker"])
    assert DATA_DIR in api and DATA_DIR in worker
    assert api[DATA_DIR][0] != worker[DATA_DIR][0]
    base_models = f"{DATA_DIR}/base-models"
    assert api[base_models][0] == worker[base_models][0]
    named = compose.get("volumes") or {}
    assert {api[DATA_DIR][0], worker[DATA_DIR][0], api[base_models][0]} <= set(named)
    for name in ("api", "worker"):
        assert environment(services[name])["TRAINSERVE_DATA_DIR"] == DATA_DIR


def test_the_store_is_the_minio_service_with_its_credentials(services: dict[str, Any]) -> None:
    env, minio = environment(services["worker"]), environment(services["minio"])
    store = urlsplit(env["TRAINSERVE_ARTIFACT_STORE"])
    assert store.scheme == "s3" and store.hostname
    endpoint = urlsplit(env["AWS_ENDPOINT_URL"])
    assert (endpoint.hostname, endpoint.port) == ("minio", 9000)
    assert argv(services["minio"]["command"])[0] == "server"
    assert env["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    # the bucket the store names is made before the api and the worker start
    bucket = services["bucket"]
    assert f"store/{store.hostname}" in " ".join(argv(bucket["command"][0]))
    assert depends_on(bucket).get("minio") == "service_healthy"
    for name in ("api", "worker"):
        assert depends_on(services[name]).get("bucket") == "service_completed_successfully"
    assert "mc ready local" in healthcheck_text(services["minio"])


def test_store_credentials_follow_the_environment() -> None:
    env = {"TRAINSERVE_API_KEY": "k", "MINIO_ROOT_USER": "u1", "MINIO_ROOT_PASSWORD": "p-1"}
    services = load_compose(env)["services"]
    app_env, minio = environment(services["api"]), environment(services["minio"])
    assert (app_env["AWS_ACCESS_KEY_ID"], app_env["AWS_SECRET_ACCESS_KEY"]) == ("u1", "p-1")
    assert (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]) == ("u1", "p-1")


# -- Dockerfile and .dockerignore ------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    instructions, pending = [], ""
    for line in lines:
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def expanded_runs() -> list[str]:
    """Each RUN's text with $ARG / ${ARG} replaced by the ARG's default."""
    args: dict[str, str] = {}
    runs = []
    for keyword, rest in dockerfile():
        if keyword == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name] = shlex.split(value)[0] if value else ""
        elif keyword == "RUN":
            runs.append(re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), rest))
    return runs


def exec_form(keyword: str) -> list[str]:
    values = [rest for kw, rest in dockerfile() if kw == keyword]
    assert values, f"no {keyword}"
    return argv(json.loads(values[-1]))


def test_image_runs_as_a_user_that_owns_the_data_dir() -> None:
    users = [rest for keyword, rest in dockerfile() if keyword == "USER"]
    assert users, "no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    owner = re.compile(rf"chown\s+(-R\s+)?{re.escape(user)}(:\S+)?\s+{DATA_DIR}\b")
    assert any(owner.search(run) for run in expanded_runs())


def test_image_points_the_data_dir_at_the_volume() -> None:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile():
        if keyword == "ENV":
            env |= dict(item.split("=", 1) for item in shlex.split(rest) if "=" in item)
    assert env.get("TRAINSERVE_DATA_DIR") == DATA_DIR


def test_image_exposes_the_api_port_and_checks_healthz() -> None:
    instructions = dockerfile()
    exposed = [
        port for keyword, rest in instructions if keyword == "EXPOSE" for port in rest.split()
    ]
    assert API_PORT in exposed
    checks = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    assert checks and checks[-1].upper() != "NONE"
    assert f"127.0.0.1:{API_PORT}/healthz" in checks[-1]


def test_image_installs_a_cuda_torch_before_the_project() -> None:
    runs = expanded_runs()
    torch_runs = [i for i, run in enumerate(runs) if re.search(r"pip install\b.*\btorch\b", run)]
    project_runs = [
        i for i, run in enumerate(runs) if re.search(r"pip install\b.*-e \.(\s|$)", run)
    ]
    assert torch_runs and project_runs
    assert torch_runs[0] < project_runs[0]
    assert "whl/cpu" not in runs[torch_runs[0]]


def test_image_copies_pyproject_before_the_source_tree() -> None:
    copies = [rest.split() for keyword, rest in dockerfile() if keyword == "COPY"]
    pyproject = next(i for i, args in enumerate(copies) if "pyproject.toml" in args[:-1])
    tree = next(i for i, args in enumerate(copies) if args[:-1] == ["."])
    assert pyproject < tree


def test_image_default_command_serves_the_api() -> None:
    args = exec_form("CMD")
    assert args[:2] == ["trainserve", "api"]
    assert flag_value(args, "--host") == "0.0.0.0"
    assert flag_value(args, "--port") == API_PORT
    resolve_cli(args)


def test_dockerignore_keeps_what_the_image_needs_and_drops_the_rest() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, pattern.rstrip("/")) for pattern in patterns)

    for path in (".venv", ".git", ".trainserve", "tests"):
        assert ignored(path), path
    for path in ("pyproject.toml", "alembic.ini", "migrations", "app", "worker"):
        assert not ignored(path), path


def dockerignored(path: str) -> bool:
    """Whether the build context leaves `path` out, by .dockerignore's rules (the last
    matching line decides; `!` lets a path back in)."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        keep = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            ignored = not keep
    return ignored


def test_what_the_dockerfile_copies_is_in_the_build_context() -> None:
    """A COPY of a path .dockerignore leaves out fails the build: the client the CLI needs,
    and the dashboard's files, must reach the image."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    sources = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    assert "clients/python" in sources
    for source in sources:
        if source != ".":
            assert not dockerignored(source), source
    for needed in ("clients/python/pyproject.toml", "app/ui/static/index.html", "app/main.py"):
        assert (ROOT / needed).exists() and not dockerignored(needed), needed
    for left_out in ("tests/unit", "clients/other", ".venv/bin", "bench/predict.py"):
        assert dockerignored(left_out), left_out
    # the client is installed before the requirements that name it (it is not on PyPI)
    assert dockerfile.index("pip install ./clients/python") < dockerfile.index("-r /tmp/req")
