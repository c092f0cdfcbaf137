"""Network namespaces for partition tests: each node in its own namespace, joined by a cable.

    root namespace (the test)
       |  management veth: the operator API, 10.R.S.6 <-> 10.R.S.5 (washington),
       |                                     10.R.S.10 <-> 10.R.S.9 (moscow)
    [washington ns] ==== cable veth 10.R.S.1 <-> 10.R.S.2 ==== [moscow ns]

Each node listens on all its addresses; its card names its cable address, so the two nodes
talk only over the cable, and the test reaches each operator API over its management link (the
namespaces do not forward, so the management links are no path between the nodes). ``cut``
takes washington's end of the cable down: washington's sends fail at once (no route), moscow's
time out (no carrier), as when a cable is cut. Names and the 10.R.S.0/28 block are drawn at
random and checked free, so parallel runs on one machine do not collide.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess

NAMES = ("washington", "moscow")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be used here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2 is missing (bash scripts/setup-system.sh iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    probe = f"hlprobe{secrets.token_hex(3)}"
    made = subprocess.run(
        ["ip", "netns", "add", probe], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        return f"'ip netns add' is not permitted here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _free_block() -> str:
    """A 10.R.S.0/28 block no interface or route of the root namespace uses: '10.R.S.'."""
    used = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True
    ).stdout
    used += subprocess.run(
        ["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True
    ).stdout
    for _ in range(100):
        r, s = 200 + secrets.randbelow(50), secrets.randbelow(16) * 16
        prefix = f"10.{r}.{s}."
        if f"10.{r}." not in used:
            return prefix
    raise RuntimeError("no free 10.x.y.0/28 block for the test network")


class NetnsPair:
    """Two namespaces with a cable between them and a management link to each."""

    def __init__(self) -> None:
        tag = secrets.token_hex(2)
        self.tag = tag
        self.ns = {name: f"hl{tag}{name[0]}" for name in NAMES}
        prefix = _free_block()
        self.cable_ip = {"washington": prefix + "1", "moscow": prefix + "2"}
        self.mgmt_ip = {"washington": prefix + "5", "moscow": prefix + "9"}
        self._root_ip = {"washington": prefix + "6", "moscow": prefix + "10"}
        self._cable = {name: f"hl{tag}c{name[0]}" for name in NAMES}
        self._created: list[str] = []

    def wrapper(self, name: str) -> list[str]:
        """The command prefix that runs a process in ``name``'s namespace."""
        return ["ip", "netns", "exec", self.ns[name]]

    def create(self) -> NetnsPair:
        try:
            for name in NAMES:
                _ip("netns", "add", self.ns[name])
                self._created.append(self.ns[name])
                _ip("-n", self.ns[name], "link", "set", "lo", "up")
            w, m = self._cable["washington"], self._cable["moscow"]
            _ip("link", "add", w, "type", "veth", "peer", "name", m)
            for name, dev in self._cable.items():
                _ip("link", "set", dev, "netns", self.ns[name])
                _ip("-n", self.ns[name], "addr", "add", f"{self.cable_ip[name]}/30", "dev", dev)
                _ip("-n", self.ns[name], "link", "set", dev, "up")
            for name in NAMES:
                inside, outside = f"hl{self.tag}a{name[0]}", f"hl{self.tag}r{name[0]}"
                _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                self._created.append(outside)
                _ip("link", "set", inside, "netns", self.ns[name])
                _ip("addr", "add", f"{self._root_ip[name]}/30", "dev", outside)
                _ip("link", "set", outside, "up")
                _ip("-n", self.ns[name], "addr", "add", f"{self.mgmt_ip[name]}/30", "dev", inside)
                _ip("-n", self.ns[name], "link", "set", inside, "up")
        except Exception:
            self.destroy()
            raise
        return self

    def cut(self) -> None:
        _ip("-n", self.ns["washington"], "link", "set", self._cable["washington"], "down")

    def heal(self) -> None:
        _ip("-n", self.ns["washington"], "link", "set", self._cable["washington"], "up")

    def destroy(self) -> None:
        """Delete what was made (a namespace takes its interfaces with it)."""
        for item in reversed(self._created):
            if item.startswith(f"hl{self.tag}r"):
                subprocess.run(["ip", "link", "del", item], capture_output=True, check=False)
            else:
                subprocess.run(["ip", "netns", "del", item], capture_output=True, check=False)
        self._created.clear()
