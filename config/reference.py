"""docs/configuration.md, generated from the fields of Settings: `python -m config > docs/configuration.md`."""

from __future__ import annotations

from pydantic import AliasChoices, SecretStr

from config.settings import Settings

_REFERENCE_HEADER = """# Configuration

<!-- Generated from the fields of config.Settings by config.reference.settings_reference(); do not edit by hand.
     Regenerate: .venv/bin/python -m config > docs/configuration.md (tests/test_docs.py checks it is current). -->

All settings come from environment variables, read once per process in one place (`config/settings.py`). The tutorial's
names (`DRYBEAN_DATA*`, `DATABASE_URL`, `MYSQL_*`) are read as they are; every other setting is its field's name
with the prefix `DRYBEANS_`. The database is `DATABASE_URL`, else the `MYSQL_*` variables (when `MYSQL_HOST` is
set), else the embedded SQLite file.

| variable | default | meaning |
| --- | --- | --- |
"""

_REFERENCE_FOOTER = """
Empty variables count as unset. BentoML's own settings (workers, port, ...) follow its conventions, e.g.
`BENTOML_CONFIG_OPTIONS="services.drybeans.workers=4"`. Two of its defaults are changed in `service.py`, and can
be set back the same way: the prediction routes are on tracing's exclusion list
(`services.drybeans.tracing.excluded_urls`: BentoML samples no traces unless `tracing.sample_rate` is set, so set
both to trace predictions), and the access log leaves out content types and lengths
(`services.drybeans.logging.access`).

More on some of them:
- `DRYBEANS_POOL_SIZE`: the pooled connections are pre-pinged.
- `DRYBEANS_APP_DB_USER`: `python -m db.migrate` grants it SELECT and INSERT on `drybeans`, `feedback`,
  `model_roles` and `shadow_predictions` ([Operations](operations.md#migrations)).
- `DRYBEANS_SPOOL_MAX_BYTES`: a full disk refuses stored predictions the same way.
- `DRYBEANS_API_TOKEN`, `DRYBEANS_TOKENS_FILE`, `DRYBEANS_PROTECT_PREDICT`, `DRYBEANS_REQUIRE_TOKEN`:
  [Access control](api.md#access-control) and [Tokens and scopes](api.md#tokens-and-scopes); predictions include
  V2 over gRPC.
- `DRYBEANS_METRICS_PORT`: 3001 in Kubernetes ([Deployment](deployment.md#kubernetes)).
- `DRYBEANS_REUSE_PORT`: why, measured: [Performance](performance.md#both-workers-busy-every-run).
- `DRYBEANS_MODELS`: the first tag answers when a database first sees roles; later the roles recorded in the
  database decide ([Ship the next model](model-lifecycle.md#ship-the-next-model)). The model store's versions are
  the Bento's.
- `DRYBEANS_QUALITY_MIN_COUNT`: also the labelled beans a comparison's verdict needs.
"""

# What a default computed from the state folder shows: that folder's own default.
_STATE_DIR_DEFAULT = {"state_dir": Settings.model_fields["state_dir"].default}
_TUTORIAL_MYSQL = "The tutorial's MySQL settings (PyMySQL, utf8mb4), used when DATABASE_URL is not set."


def settings_reference() -> str:
    """docs/configuration.md: a table of every Settings field's variable, default and meaning, from the fields."""
    rows = []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        variable = str(alias.choices[0]) if isinstance(alias, AliasChoices) else f"DRYBEANS_{name.upper()}"
        description = field.description or (_TUTORIAL_MYSQL if variable.startswith("MYSQL_") else None)
        if description is None:
            raise ValueError(f"Settings.{name} has no description: give its Field a description= for the docs")
        cell = description.replace("|", "\\|")
        default = field.get_default(call_default_factory=True, validated_data=_STATE_DIR_DEFAULT)
        rows.append(f"| `{variable}` | {_shown_default(default)} | {cell} |")
    return _REFERENCE_HEADER + "\n".join(rows) + "\n" + _REFERENCE_FOOTER


def _shown_default(value: object) -> str:
    """A default as the reference shows it: `unset`, a secret's as `empty` or `hidden`, else the value."""
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "hidden" if value.get_secret_value() else "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"

