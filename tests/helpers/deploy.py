"""Read the commands and probes of deploy/cpr-serve (shared by the deploy and serving tests)."""
import json
import re
import shlex
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "cpr-serve"
SYSTEMD_UNIT = DEPLOY / "cpr-serve.service"
KUBERNETES = DEPLOY / "cpr-serve-k8s.yaml"


def systemd_command() -> list[str]:
    """ExecStart of the systemd unit, continuation lines joined, split as systemd splits it."""
    text = SYSTEMD_UNIT.read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    return shlex.split(line.split("=", 1)[1])


def kubernetes_command() -> list[str]:
    """The container's ``args`` list (written in JSON-compatible flow style)."""
    return json.loads(re.search(r"args: (\[.*?\])", KUBERNETES.read_text(), re.S).group(1))


def probe_paths() -> set[str]:
    """HTTP paths of the Kubernetes probes."""
    return set(re.findall(r"httpGet: \{path: (\S+), port: http\}", KUBERNETES.read_text()))
