"""Artifacts over the bond: chunk manifests, the per-node artifact server, parallel fetches.

`manifest` digests chunks, `commit` puts verified files in place, `register` adds a file
to a node's store, `locate` reads and writes the SQL rows, `server` serves a node's store,
`fetch` pulls an artifact in parallel verified ranges (`spread` picks the streams'
source ports so they split evenly over a layer3+4 bond), `ensure` makes one local, and
`client` uploads (`put`) and asks a node to pre-stage (`push`).
"""
