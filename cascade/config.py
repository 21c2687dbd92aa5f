"""One typed settings object, read once from the environment (prefix ``CASCADE_``) and passed in."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.engines import ENGINE_KINDS

log = logging.getLogger(__name__)

PLACEHOLDER_SECRETS = {"", "changethis", "change-me", "dev-insecure-secret"}
SECRET_FIELDS = ("secret_key", "callback_secret")
SECRETS_FILE = "secrets.json"  # under var_dir: this installation's own random secrets


class Settings(BaseSettings):
    """Everything Cascade reads from its environment.

    Production sets ``CASCADE_ENV=production``; then placeholder secrets are refused at start-up
    rather than discovered later. Elsewhere unset secrets come from ``var_dir/secrets.json``
    (random, made on first use; see ``with_local_secrets``): no placeholder ever signs.
    """

    model_config = SettingsConfigDict(env_prefix="CASCADE_", env_file=None, extra="ignore")

    env: Literal["dev", "test", "production"] = "dev"
    var_dir: Path = Path("var")

    # Connections. ``broker_url=None`` means: the embedded runner starts a local redis-server.
    broker_url: str | None = None
    result_backend: str | None = None
    # Unacknowledged messages return to the queue after this long (a worker killed mid-batch).
    broker_visibility_timeout_s: int = 300
    database_url: str | None = None
    blob_url: str | None = None

    # Web
    host: str = "127.0.0.1"
    port: int = 8000
    secret_key: str = ""  # unset: this installation's own, from var_dir/secrets.json
    callback_secret: str = ""
    callback_allow_private: bool = False
    callback_timeout_s: float = 5.0
    callback_max_retries: int = 5
    public_url: str = "http://127.0.0.1:8000"

    # Upload limits
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_batch_images: int = 64
    max_request_bytes: int = 64 * 1024 * 1024  # a whole (batch) request body
    rate_limit_per_minute: int = 6000
    # A valid API key is trusted this long without a database look-up (cascade.apikeys.KeyCache):
    # a revoked key is refused within this many seconds, not at once. 0: look up every request.
    api_key_cache_s: float = Field(5.0, ge=0.0, le=300.0)
    max_queue_depth: int = 50_000
    metrics_port: int = 9808  # workers expose /metrics here (production; embedded runs aggregate)

    # Models and inference
    model_dir: Path = Path("var/models")
    engine: str = "onnx"  # one of models.engines.ENGINE_KINDS
    stage1_batch_size: int = 32
    stage1_flush_interval_s: float = 0.05
    stage2_batch_size: int = 16
    stage2_flush_interval_s: float = 0.1
    decode_threads: int = 2
    # ONNX Runtime intra-op threads per stage worker (0: all usable cores, at most 8). One by
    # default: measured on 2 shared cores, spare intra-op threads spin and cost each stage 2-3x
    # the CPU per image (README, "Batching knobs"); raise it on a node with cores to spare.
    engine_threads: int = Field(1, ge=0, le=64)
    # Unfinished submissions older than this are enqueued again by the periodic sweep (a
    # message lost with a killed worker or a restarted broker); redelivery is harmless.
    stale_after_s: int = 120

    # Policy
    audit_rate: float = Field(0.02, ge=0.0, le=1.0)
    threshold_refresh_s: float = 2.0
    near_duplicate_distance: int = Field(0, ge=0, le=64)  # 0: exact-hash cache only

    # Cost model ($). Device prices are per hour. ``stage<n>_billed_as`` names the device type a
    # stage's busy time is billed at (a key of ``device_prices_per_hour``, also the ``device``
    # label of its metrics); it does not choose where the stage runs (``engine`` does).
    stage1_billed_as: str = "cpu"
    stage2_billed_as: str = "cpu"
    device_prices_per_hour: dict[str, float] = {
        "cpu": 0.10,
        "t4": 0.526,
        "a10g": 1.006,
        "l4": 0.805,
        "a100": 3.67,
        "h100": 6.88,
    }
    # Device-seconds per image assumed by the feedback service until workers have recorded
    # batches of their own (then the measured figures are used).
    stage1_seconds_per_image: float = 0.004
    stage2_seconds_per_image: float = 0.045
    human_review_cost: float = 0.05
    miss_cost: float = 5.0
    false_block_cost: float = 0.50

    # Review
    double_label_rate: float = Field(0.1, ge=0.0, le=1.0)
    # Votes against an audit item's automatic decision must outnumber the votes for it by this
    # many before the error counts (cascade/review.py, resolve_conflict); 1 for a team of one admin.
    audit_dispute_margin: int = Field(2, ge=1, le=3)
    review_lease_s: int = 120
    signed_url_ttl_s: int = 60

    # Feedback
    alpha: float = Field(0.01, gt=0.0, lt=1.0)  # bound on the miss rate
    delta: float = Field(0.05, gt=0.0, lt=1.0)  # 1 - confidence of that bound
    # Optional bound on the false-block rate, certified jointly; delta is split between the
    # two bounds, miss_share of it to misses (feedback/risk.py).
    beta: float | None = Field(None, gt=0.0, lt=1.0)
    miss_share: float = Field(0.5, gt=0.0, lt=1.0)
    # Among certified sets within this many standard errors of the cheapest, the retune takes
    # the one sending the fewest images to stage 2 (feedback/tiebreak.py); 0 (default): the
    # cheapest. Trades a few more reviews or false blocks for a smaller stage-2 pool.
    tie_break_se: float = Field(0.0, ge=0.0)
    # A retune's new set that would allow more than the set in force replaces it only when the
    # audit labels, paired image by image, show it cheaper by this many standard errors; a
    # tighter one always does (feedback/incumbent.py). 0: any estimated saving switches.
    switch_se: float = Field(1.0, ge=0.0)
    drift_level: float = Field(0.01, gt=0.0, lt=1.0)  # false-alarm chance of one drift watch
    retune_interval_s: int = 3600
    auto_activate: bool = False
    max_reviews_per_hour: float | None = None

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, kind: str) -> str:
        if kind not in ENGINE_KINDS:
            raise ValueError(f"unknown engine {kind!r}; choose one of {', '.join(ENGINE_KINDS)}")
        return kind

    @model_validator(mode="after")
    def _fail_fast_on_placeholders(self) -> Settings:
        if self.env == "production":
            for name in ("secret_key", "callback_secret"):
                if getattr(self, name) in PLACEHOLDER_SECRETS:
                    raise ValueError(
                        f"CASCADE_{name.upper()} is a placeholder; set a random secret "
                        f"(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)."
                    )
            for name in ("broker_url", "database_url"):
                if not getattr(self, name):
                    raise ValueError(f"CASCADE_{name.upper()} must be set in production.")
        return self

    # Derived defaults: the embedded run keeps its state under ``var_dir``.
    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'cascade.db').resolve()}"

    @property
    def blobs(self) -> str:
        return self.blob_url or str((self.var_dir / "blobs").resolve())

    def billed_as(self, stage: str) -> str:
        """The device type ``stage`` ("stage1" or "stage2") is billed as."""
        return self.stage1_billed_as if stage == "stage1" else self.stage2_billed_as

    def stage_price_per_hour(self, stage: str) -> float:
        """$/hour of the device type ``stage`` is billed as."""
        return self.device_price(self.billed_as(stage))

    def device_price(self, device: str) -> float:
        """$/hour of a device type; unknown devices are a configuration error."""
        try:
            return self.device_prices_per_hour[device]
        except KeyError:
            known = ", ".join(sorted(self.device_prices_per_hour))
            raise ValueError(f"no price for device {device!r}; known: {known}") from None


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as ``CASCADE_*`` environment variables, for child processes to read back."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        if isinstance(value, dict | list):
            env[f"CASCADE_{name.upper()}"] = json.dumps(value)
        elif isinstance(value, bool):
            env[f"CASCADE_{name.upper()}"] = "true" if value else "false"
        else:
            env[f"CASCADE_{name.upper()}"] = str(value)
    return env


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def refuse_public_placeholders(settings: Settings, host: str) -> None:
    """Refuse to listen beyond loopback while a secret is set to a known placeholder (in every
    env): such a secret lets anyone forge a session cookie or a callback signature."""
    named = [n for n in SECRET_FIELDS if getattr(settings, n) in PLACEHOLDER_SECRETS - {""}]
    if named and not is_loopback(host):
        names = ", ".join(f"CASCADE_{n.upper()}" for n in named)
        raise ValueError(
            f"refusing to listen on {host}: {names} set to a public placeholder. Unset it (this "
            f"installation's own random secret in {settings.var_dir / SECRETS_FILE} is used) or "
            "set a random one (`python -c 'import secrets; print(secrets.token_hex(32))'`)."
        )


def with_local_secrets(settings: Settings) -> Settings:
    """``settings`` whose unset or placeholder secrets are replaced by this installation's own:
    random, kept in ``var_dir/secrets.json`` (mode 0600), made on first use. Every process of
    an installation (and every restart) reads the same ones, so sessions and callback
    signatures stay valid across processes, and no two installations share a secret."""
    named = [n for n in SECRET_FIELDS if getattr(settings, n) in PLACEHOLDER_SECRETS]
    if not named:
        return settings
    for name in named:
        if getattr(settings, name):
            log.warning("CASCADE_%s is a placeholder; using %s instead", name.upper(),
                        settings.var_dir / SECRETS_FILE)  # fmt: skip
    stored = _load_or_create_secrets(settings.var_dir / SECRETS_FILE)
    return settings.model_copy(update={n: stored[n] for n in named})


def _load_or_create_secrets(path: Path) -> dict[str, str]:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        made = {n: secrets.token_hex(32) for n in SECRET_FIELDS}
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(made, handle)
        try:
            os.link(draft, path)  # atomic; a process that got there first wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    try:
        stored = json.loads(path.read_text())
        if all(stored[n] not in PLACEHOLDER_SECRETS for n in SECRET_FIELDS):
            return {n: str(stored[n]) for n in SECRET_FIELDS}
    except (ValueError, KeyError, TypeError):
        pass
    raise ValueError(f"{path} does not hold usable secrets; delete it to make new ones")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once, with this installation's own secrets where none are
    set (see ``with_local_secrets``)."""
    settings = Settings()
    refuse_public_placeholders(settings, settings.host)
    return with_local_secrets(settings)
