"""Where a node's own servers listen: its bond address, and its LAN address when it
has one (the artifact server and the metrics endpoint both bind there)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sparkjobs.config import Config


def bind_addresses(config: Config, node: str) -> list[str]:
    """The node's bond address, and its LAN address when it has one (for `put` from a laptop)."""
    node_config = config.nodes[node]
    found = [str(node_config.bond_address)]
    if node_config.lan_address is not None:
        found.append(str(node_config.lan_address))
    return found
