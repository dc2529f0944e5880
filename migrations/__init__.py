"""The store's Alembic environment (env.py, script.py.mako, versions/).

It lives at the top of the repository and installs as `sparkjobs.migrations` (the
package-dir mapping in pyproject.toml), so a node that installed sparkjobs from a wheel
can run `sparkjobs db upgrade` without a checkout. `sparkjobs.store.schema` finds this
directory through importlib.resources; nothing imports these modules (import-linter
holds that), and Alembic loads env.py and versions/ by path.
"""
