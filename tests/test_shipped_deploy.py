"""The shipped deployment: docker compose stack, its configs, the image, Kubernetes manifests."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from exporter.config import parse_config
from tests.support import peers

REPO = pathlib.Path(__file__).resolve().parents[1]
COMPOSE_DIR = REPO / "deploy" / "compose"
K8S = REPO / "deploy" / "kubernetes"
STACK = {"postgres", "exporter", "prometheus", "alertmanager", "grafana"}
# The sections and keys of the spec's YAML example, plus web.listen_address.
CONFIG_KEYS: dict[str, set[str] | None] = {
    "web": {"listen_address"},
    "auth": {"tokens"},
    "services": None,
    "quality": {"sources", "checks"},
    "alerts": {"alertmanager_url", "alertmanager_urls", "reconcile_interval"},
    "heartbeats": None,
}


def load_yaml(path: pathlib.Path) -> Any:
    """Parse one YAML file."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed (merge keys resolved)."""
    data: dict[str, Any] = load_yaml(REPO / "docker-compose.yml")
    return data


def run(*args: str, cwd: pathlib.Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output."""
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Bind mounts of a compose service: container path -> host path (named volumes left out)."""
    found: dict[str, str] = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            found[target] = source
    return found


def secret_files(service: dict[str, Any]) -> dict[str, pathlib.Path]:
    """The secrets a compose service gets: /run/secrets/<name> -> file in the repository."""
    defined = compose()["secrets"]
    return {
        f"/run/secrets/{name}": REPO / defined[name]["file"] for name in service.get("secrets", [])
    }


# ------------------------------------------------------------------ Prometheus, Alertmanager
def test_promtool_check_config_with_the_rules(tmp_path: pathlib.Path) -> None:
    # Lay the files out as the prometheus container sees them: the config with rules/ next to
    # it, so the relative rule_files glob resolves to the repository's rules.
    shutil.copy(COMPOSE_DIR / "prometheus.yml", tmp_path / "prometheus.yml")
    (tmp_path / "rules").symlink_to(REPO / "rules", target_is_directory=True)
    result = peers.run("promtool", "check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = len(list((REPO / "rules").glob("*.yml")))
    assert f"SUCCESS: {rule_files} rule files found" in result.stdout + result.stderr


def test_promtool_check_config_in_place() -> None:
    result = peers.run("promtool", "check", "config", str(COMPOSE_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_mounts_match_its_rule_files() -> None:
    config = load_yaml(COMPOSE_DIR / "prometheus.yml")
    prometheus = compose()["services"]["prometheus"]
    binds = mounts(prometheus)
    assert binds["/etc/prometheus/prometheus.yml"] == "./deploy/compose/prometheus.yml"
    assert binds["/etc/prometheus/rules"] == "./rules"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert config["rule_files"] == ["rules/*.yml"]


def test_prometheus_scrapes_the_exporter_and_alerts_alertmanager() -> None:
    config = load_yaml(COMPOSE_DIR / "prometheus.yml")
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    # the rules watch up{job="monitoring-exporter"}
    targets = jobs["monitoring-exporter"]["static_configs"][0]["targets"]
    assert targets == ["exporter:9810"]
    am = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]


def test_amtool_check_config() -> None:
    result = peers.run("amtool", "check-config", str(COMPOSE_DIR / "alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_webhook_sends_the_exporters_write_token() -> None:
    config = load_yaml(COMPOSE_DIR / "alertmanager.yml")
    receivers = {r["name"]: r for r in config["receivers"]}
    (hook,) = receivers[config["route"]["receiver"]]["webhook_configs"]
    assert hook["url"] == "http://exporter:9810/api/v1/alertmanager"
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth.get("type", "Bearer") == "Bearer"
    token_path = auth["credentials_file"]
    services = compose()["services"]
    am_secret = secret_files(services["alertmanager"])[token_path]
    assert am_secret.is_file()
    # the exporter accepts the same secret as a token with scope write
    exporter_cfg = load_yaml(COMPOSE_DIR / "exporter.yaml")
    tokens = [t for t in exporter_cfg["auth"]["tokens"] if t.get("token_file") == token_path]
    assert tokens and "write" in tokens[0]["scopes"]
    assert secret_files(services["exporter"])[token_path] == am_secret


# ------------------------------------------------------------------ docker compose
def test_compose_has_the_stack() -> None:
    services = compose()["services"]
    assert set(services) >= STACK


def test_compose_bind_mounts_and_secret_files_exist() -> None:
    data = compose()
    for name, service in data["services"].items():
        for target, source in mounts(service).items():
            assert (REPO / source).exists(), f"{name}: {source} -> {target}"
        for secret in service.get("secrets", []):
            assert secret in data["secrets"], f"{name}: undefined secret {secret}"
    for name, secret in data["secrets"].items():
        assert (REPO / secret["file"]).is_file(), name
    # named volumes are declared
    for service in data["services"].values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in data["volumes"], source


def test_compose_depends_on_existing_services() -> None:
    services = compose()["services"]
    for name, service in services.items():
        depends = service.get("depends_on", [])
        for dependency in depends:
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if isinstance(depends, dict):
                condition = depends[dependency]["condition"]
                if condition == "service_healthy":
                    assert "healthcheck" in services[dependency], dependency


def test_compose_postgres_healthcheck() -> None:
    postgres = compose()["services"]["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "POSTGRES_PASSWORD_FILE" in postgres["environment"]
    assert mounts(postgres)["/docker-entrypoint-initdb.d"] == "./deploy/compose/postgres/initdb"


def test_compose_exporter() -> None:
    exporter = compose()["services"]["exporter"]
    assert exporter["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert exporter["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "/readyz" in " ".join(exporter["healthcheck"]["test"])
    config_path = exporter["environment"]["MONITORING_CONFIG"]
    assert mounts(exporter)[config_path] == "./deploy/compose/exporter.yaml"
    assert exporter["command"] == ["serve"]
    assert "9810:9810" in exporter["ports"]


def test_compose_migrates_before_granting_grafana_read_access() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["migrate"]
    grants = services["db-grants"]
    assert grants["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert grants["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    grafana = services["grafana"]
    assert grafana["depends_on"]["db-grants"]["condition"] == "service_completed_successfully"
    # Grafana reads its database password from the secret the grant step set
    datasource = (REPO / "grafana/provisioning/datasources/datasources.yml").read_text()
    (path,) = re.findall(r"\$__file\{([^}]+)\}", datasource)
    assert path in secret_files(grafana)
    assert secret_files(grafana)[path] == secret_files(grants)[path]


def database_login(service: dict[str, Any]) -> tuple[str, str]:
    """(login, password secret path) of the database URL a compose service's entrypoint builds."""
    shell, flag, script, _argv0 = service["entrypoint"]
    assert (shell, flag) == ("/bin/sh", "-c")
    # $$ is docker compose's escape for a literal $
    script = script.replace("$$", "$")
    assert 'exec monitoring-exporter "$@"' in script
    (match,) = re.findall(
        r'MONITORING_DATABASE_URL="postgresql://(\w+):\$\(cat (/run/secrets/\w+)\)@postgres:5432/'
        r'monitoring"',
        script,
    )
    login, secret = match
    assert secret in secret_files(service)
    password = secret_files(service)[secret].read_text()
    assert re.fullmatch(r"[A-Za-z0-9]+", password), "the password is put into a URL unescaped"
    return login, secret


def init_sql() -> str:
    """The SQL the postgres container's init script runs on a fresh volume."""
    (script,) = (COMPOSE_DIR / "postgres" / "initdb").glob("*.sh")
    text = script.read_text()
    return text[text.index("<<'SQL'") : text.rindex("SQL")]


def test_compose_runs_the_service_as_the_writer_and_migrate_as_the_owner() -> None:
    services = compose()["services"]
    exporter, migrate = services["exporter"], services["migrate"]
    service_login, service_secret = database_login(exporter)
    owner_login, owner_secret = database_login(migrate)
    assert (service_login, service_secret) == ("exporter", "/run/secrets/exporter_db_password")
    assert owner_login == "monitoring_owner"
    assert owner_secret != service_secret
    # the owner's password never reaches the service
    assert owner_secret not in secret_files(exporter)
    # the init script makes the owner able to migrate and the service a writer, nothing more
    sql = init_sql()
    assert "CREATE ROLE monitoring_writer NOLOGIN;" in sql
    assert re.search(r"CREATE ROLE monitoring_owner LOGIN CREATEROLE PASSWORD", sql)
    assert 'GRANT CREATE, CONNECT ON DATABASE :"dbname" TO monitoring_owner;' in sql
    (service_role,) = re.findall(r"CREATE ROLE exporter ([^;]*);", sql)
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE" in service_role
    assert re.findall(r"GRANT (\w+) TO exporter;", sql) == ["monitoring_writer"]
    assert "TO exporter" not in sql.replace("GRANT monitoring_writer TO exporter", "")
    postgres_secrets = secret_files(services["postgres"])
    for secret in (service_secret, owner_secret):
        assert secret in postgres_secrets
        assert (
            f"cat {secret})"
            in (COMPOSE_DIR / "postgres" / "initdb" / "10-exporter-logins.sh").read_text()
        )
    # migrate stores the service's retention policy: the same config file
    assert mounts(migrate) == mounts(exporter)
    assert migrate["environment"] == exporter["environment"]


def test_secret_placeholders_are_marked() -> None:
    for path in (COMPOSE_DIR / "secrets").glob("*.txt"):
        assert "dev" in path.read_text().lower(), f"{path.name} is not a marked placeholder"
    assert "not for production" in (COMPOSE_DIR / "secrets" / "README.md").read_text()


def _configure_secrets(data: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point /run/secrets/<name> at the repository's placeholders; set referenced env vars."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key.endswith("_env"):
                monkeypatch.setenv(value, "postgresql://u:p@h/db")
            if key.endswith("_file") and str(value).startswith("/run/secrets/"):
                value = str(COMPOSE_DIR / "secrets" / (str(value).rsplit("/", 1)[1] + ".txt"))
            out[key] = _configure_secrets(value, monkeypatch)
        return out
    if isinstance(data, list):
        return [_configure_secrets(v, monkeypatch) for v in data]
    return data


def _exporter_configs() -> dict[str, Any]:
    configmap = load_yaml(K8S / "configmap.yaml")
    return {
        "compose": load_yaml(COMPOSE_DIR / "exporter.yaml"),
        "kubernetes": yaml.safe_load(configmap["data"]["config.yaml"]),
    }


@pytest.mark.parametrize("where", ["compose", "kubernetes"])
def test_exporter_config_is_valid(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _exporter_configs()[where]
    for section, value in data.items():
        assert section in CONFIG_KEYS, f"{section}: not a section of the spec's example"
        allowed = CONFIG_KEYS[section]
        if allowed is not None:
            assert set(value) <= allowed, (section, set(value) - allowed)
    assert data["web"]["listen_address"] == ":9810"
    config = parse_config(_configure_secrets(data, monkeypatch))
    assert config.auth.tokens


# ------------------------------------------------------------------ image
def test_dockerfile() -> None:
    text = (REPO / "Dockerfile").read_text()
    instructions = [
        line.split(None, 1) for line in text.splitlines() if line and not line[0].isspace()
    ]
    keywords = {i[0]: i[1] for i in instructions if i[0].isupper() and len(i) == 2}
    assert keywords["FROM"] == "python:3.11-slim"
    assert re.search(r"pip install \.(\s|$)", text)
    assert keywords["EXPOSE"] == "9810"
    assert keywords["ENTRYPOINT"] == '["monitoring-exporter"]'
    user = keywords["USER"].split(":")[0]
    assert user not in {"root", "0"}
    # numeric, so Kubernetes can verify runAsNonRoot
    assert user.isdigit()


# ------------------------------------------------------------------ Kubernetes
def k8s_docs() -> dict[str, list[dict[str, Any]]]:
    """Every manifest, by file name."""
    docs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        docs[path.name] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def k8s_kind(kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of this kind (and name)."""
    (obj,) = [
        d
        for docs in k8s_docs().values()
        for d in docs
        if d.get("kind") == kind and name in (None, d["metadata"]["name"])
    ]
    return obj


def test_kubernetes_manifests_parse_and_are_namespace_less() -> None:
    docs = k8s_docs()
    assert docs
    for name, objects in docs.items():
        assert objects, name
        for obj in objects:
            assert obj["apiVersion"] and obj["kind"], name
            if obj["kind"] != "Kustomization":
                assert obj["metadata"]["name"], name
                assert "namespace" not in obj["metadata"], name
    kinds = {d["kind"] for objects in docs.values() for d in objects}
    assert kinds >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "ServiceMonitor",
        "PodDisruptionBudget",
        "Kustomization",
    }


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    files = {p.name for p in K8S.glob("*.y*ml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_kustomize_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the static checks above still apply")
    result = run(kubectl, "kustomize", str(K8S))
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    resources = load_yaml(K8S / "kustomization.yaml")["resources"]
    assert len(built) == sum(len(k8s_docs()[name]) for name in resources)


def _container() -> dict[str, Any]:
    (container,) = k8s_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = container
    return found


def test_deployment_probes() -> None:
    container = _container()
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/livez"
    # time for migrations before liveness takes over
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 120


def test_deployment_ports_match_the_service() -> None:
    container = _container()
    service = k8s_kind("Service")
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http-metrics" and port["port"] == 9810
    (container_port,) = container["ports"]
    assert container_port["containerPort"] == 9810
    assert port["targetPort"] in (container_port["name"], container_port["containerPort"])
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in (container_port["name"], 9810)
    pod_labels = k8s_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_deployment_shutdown_and_security() -> None:
    deployment = k8s_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    # the service exits within 20 s of SIGTERM
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = _container()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_deployment_config_and_secrets() -> None:
    container = _container()
    pod = k8s_kind("Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in container["env"]}
    secret = k8s_kind("Secret", "monitoring-exporter")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for item in env.values():
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in keys, item
    assert "secretKeyRef" in env["MONITORING_DATABASE_URL"]["valueFrom"]
    # MONITORING_CONFIG is the ConfigMap's config.yaml as mounted
    config_path = pathlib.PurePosixPath(env["MONITORING_CONFIG"]["value"])
    assert str(config_path) == "/etc/monitoring-exporter/config.yaml"
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent)]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = k8s_kind("ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    (item,) = volume["configMap"]["items"]
    assert item["path"] == config_path.name and item["key"] in configmap["data"]
    # every token_env of the config is set from the Secret
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    for token in config["auth"]["tokens"]:
        assert "token" not in token, "no inline secrets in a ConfigMap"
        if "token_env" in token:
            assert "secretKeyRef" in env[token["token_env"]]["valueFrom"]


def test_kubernetes_migrates_as_the_owner_and_serves_as_the_writer() -> None:
    pod = k8s_kind("Deployment")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (service,) = pod["containers"]
    assert init["args"] == ["migrate"] and service["args"] == ["serve"]
    assert init["image"] == service["image"]

    def secret_refs(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
        return {
            e["name"]: (ref["name"], ref["key"])
            for e in container["env"]
            if (ref := e.get("valueFrom", {}).get("secretKeyRef"))
        }

    init_refs, service_refs = secret_refs(init), secret_refs(service)
    owner = k8s_kind("Secret", "monitoring-exporter-migrate")
    writer = k8s_kind("Secret", "monitoring-exporter")
    assert init_refs["MONITORING_DATABASE_URL"] == ("monitoring-exporter-migrate", "database-url")
    assert service_refs["MONITORING_DATABASE_URL"] == ("monitoring-exporter", "database-url")
    # only the init container sees the owner's login
    assert all(name != owner["metadata"]["name"] for name, _ in service_refs.values())
    assert urlsplit(owner["stringData"]["database-url"]).username == "monitoring_owner"
    assert urlsplit(writer["stringData"]["database-url"]).username == "exporter"
    # the same config (so the stored retention policy is the service's), parsed whole: every
    # other variable the service gets, the init container gets alike
    env = {e["name"]: e for e in init["env"]}
    for item in service["env"]:
        if item["name"] not in ("MONITORING_DATABASE_URL", "MONITORING_REPLICA"):
            assert env[item["name"]] == item
    config_mounts = [m for m in service["volumeMounts"] if m["name"] == "config"]
    assert config_mounts and all(m in init["volumeMounts"] for m in config_mounts)
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["securityContext"]["allowPrivilegeEscalation"] is False


def test_servicemonitor_selects_the_service() -> None:
    monitor = k8s_kind("ServiceMonitor")
    service = k8s_kind("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # the job label is the Service name; the rules watch up{job="monitoring-exporter"}
    assert service["metadata"]["name"] == "monitoring-exporter"


def test_pod_disruption_budget_selects_the_pods() -> None:
    pdb = k8s_kind("PodDisruptionBudget")
    deployment = k8s_kind("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    # three replicas; each names itself after its pod (its host figures carry that label)
    assert deployment["spec"]["replicas"] == 3 and pdb["spec"]["minAvailable"] == 2
    (service,) = deployment["spec"]["template"]["spec"]["containers"]
    (replica,) = [e for e in service["env"] if e["name"] == "MONITORING_REPLICA"]
    assert replica["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
