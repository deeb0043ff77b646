"""The lab's plan: which hosts exist, their addresses, names, ports and files. Pure logic.

Everything the lab creates is derived from a `LabSpec`, so `lab down` can find and remove
exactly what `lab up` made, and tests can run a lab beside a demo one by choosing another
namespace prefix, bridge name, subnet and state directory.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from selfheal.errors import ConfigError

MODES = ("netns", "loopback")
DEFAULT_SUBNETS = {"netns": "10.77.0.0/24", "loopback": "127.0.0.0/24"}
DEFAULT_SSH_PORT_BASE = {"netns": 22, "loopback": 2220}
HOST_OFFSET = 10  # host i (1-based) gets the subnet's address 10 + i: .11, .12, ...
MAX_HOSTS = 50
IFNAMSIZ = 15  # longest Linux interface name
SOCKET_PATH_MAX = 99  # sun_path (107) less the ".PID" supervisord adds while binding
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def default_state_dir() -> Path:
    """`$SELFHEAL_LAB_DIR`, else `$XDG_STATE_HOME/selfheal/lab` (`~/.local/state/...`)."""
    if env := os.environ.get("SELFHEAL_LAB_DIR"):
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "selfheal" / "lab"


@dataclass(frozen=True)
class HostSpec:
    index: int
    name: str
    address: str
    ssh_port: int
    web_port: int
    dir: Path
    netns: str | None = None  # netns mode only
    veth: str | None = None  # root-namespace end, enslaved to the bridge
    veth_peer: str | None = None  # moved into the namespace and renamed eth0

    # Files of this host, all under its own directory.
    @property
    def sshd_config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def authorized_keys(self) -> Path:
        return self.dir / "authorized_keys"

    @property
    def sshd_pidfile(self) -> Path:
        return self.dir / "sshd.pid"

    @property
    def sshd_log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def supervisor_dir(self) -> Path:
        return self.dir / "sv"  # short: the socket path inside must fit a sun_path

    @property
    def supervisor_config(self) -> Path:
        return self.supervisor_dir / "supervisord.conf"

    def url(self, path: str = "/") -> str:
        return f"http://{self.address}:{self.web_port}{path}"


@dataclass(frozen=True)
class LabSpec:
    state_dir: Path
    hosts: int = 3
    mode: str = "netns"
    netns_prefix: str = "selfheal-lab-"
    bridge: str = "shlab0"
    subnet: str = ""  # "" = the mode's default
    ssh_port_base: int = 0  # 0 = the mode's default (netns: port 22 on every host)
    web_port: int = 8080
    host_prefix: str = "lab"
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    # The service each host runs as `web`; "" = the selfheal demo service. A template with
    # {python}, {address}, {port} and {name}.
    web_command: str = ""
    # PostgreSQL: a primary on host 1 and a streaming replica on host 2 (needs 2+ hosts).
    postgres: bool = False
    postgres_port: int = 5432
    _network: ipaddress.IPv4Network = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())
        if self.mode not in MODES:
            raise ConfigError(f"must be one of {', '.join(MODES)} (got {self.mode!r})", "mode")
        if not 1 <= self.hosts <= MAX_HOSTS:
            raise ConfigError(f"must be between 1 and {MAX_HOSTS} (got {self.hosts})", "hosts")
        if not self.subnet:
            object.__setattr__(self, "subnet", DEFAULT_SUBNETS[self.mode])
        if not self.ssh_port_base:
            object.__setattr__(self, "ssh_port_base", DEFAULT_SSH_PORT_BASE[self.mode])
        try:
            network = ipaddress.IPv4Network(self.subnet, strict=True)
        except ValueError as exc:
            raise ConfigError(f"not an IPv4 network: {exc}", "subnet") from None
        if network.num_addresses < HOST_OFFSET + self.hosts + 2:
            raise ConfigError(f"{network} is too small for {self.hosts} hosts", "subnet")
        if self.mode == "loopback" and not network.is_loopback:
            raise ConfigError(
                f"loopback mode needs a subnet of 127.0.0.0/8 (got {network})", "subnet"
            )
        object.__setattr__(self, "_network", network)
        for name in ("netns_prefix", "bridge", "host_prefix"):
            value = getattr(self, name)
            if not _NAME.match(value):
                raise ConfigError(f"letters, digits, '-', '_' and '.' only (got {value!r})", name)
        if len(self.bridge) > IFNAMSIZ or len(self.veth_name(self.hosts, "p")) > IFNAMSIZ:
            raise ConfigError(f"too long for interface names (max {IFNAMSIZ - 4})", "bridge")
        if any(c.isspace() for c in str(self.state_dir)):
            raise ConfigError("must not contain whitespace", "state_dir")
        sock = self.host(self.hosts).supervisor_dir / "supervisor.sock"
        if len(str(sock)) > SOCKET_PATH_MAX:
            raise ConfigError(f"too long for a unix socket path under it ({sock})", "state_dir")
        if self.postgres and self.hosts < 2:
            raise ConfigError("PostgreSQL (primary + replica) needs at least 2 hosts", "hosts")
        ports = [self.web_port, self.prometheus_port, self.alertmanager_port, self.ssh_port_base]
        ports.append(self.postgres_port)
        if not all(0 < p < 65536 for p in ports) or self.ssh_port_base + self.hosts > 65535:
            raise ConfigError("ports must be between 1 and 65535", "ports")

    # -- the plan ---------------------------------------------------------------------------
    @property
    def network(self) -> ipaddress.IPv4Network:
        return self._network

    @property
    def gateway(self) -> str:
        """The bridge's address in the root namespace (netns mode): the controller's side."""
        return str(self._network.network_address + 1)

    @property
    def prefixlen(self) -> int:
        return self._network.prefixlen

    def veth_name(self, index: int, end: str = "v") -> str:
        return f"{self.bridge}{end}{index}"

    def host(self, index: int) -> HostSpec:
        if not 1 <= index <= self.hosts:
            raise ConfigError(f"no host {index} in a lab of {self.hosts}", "hosts")
        name = f"{self.host_prefix}{index}"
        netns = self.mode == "netns"
        return HostSpec(
            index=index,
            name=name,
            address=str(self._network.network_address + HOST_OFFSET + index),
            ssh_port=self.ssh_port_base + (0 if netns else index),
            web_port=self.web_port,
            dir=self.state_dir / "hosts" / name,
            netns=f"{self.netns_prefix}{index}" if netns else None,
            veth=self.veth_name(index, "v") if netns else None,
            veth_peer=self.veth_name(index, "p") if netns else None,
        )

    def postgres_role(self, host: HostSpec) -> str | None:
        """ "primary" (host 1), "replica" (host 2), or None (no PostgreSQL there)."""
        return {1: "primary", 2: "replica"}.get(host.index) if self.postgres else None

    @property
    def postgres_dir(self) -> Path:
        """A link to the postgres-owned directory holding the data directories."""
        return self.state_dir / "postgres"

    def all_hosts(self) -> list[HostSpec]:
        return [self.host(i) for i in range(1, self.hosts + 1)]

    # -- lab-wide files ---------------------------------------------------------------------
    @property
    def record(self) -> Path:
        return self.state_dir / "lab.json"

    @property
    def inventory(self) -> Path:
        return self.state_dir / "inventory" / "hosts.yml"

    @property
    def policy(self) -> Path:
        return self.state_dir / "inventory" / "policy.yml"

    @property
    def client_key(self) -> Path:
        return self.state_dir / "ssh" / "id_ed25519"

    @property
    def monitoring_dir(self) -> Path:
        return self.state_dir / "monitoring"

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("_network", None)
        data["state_dir"] = str(self.state_dir)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> LabSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k[0] != "_"}
        return cls(**known)
