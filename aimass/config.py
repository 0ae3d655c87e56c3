"""Server settings, read from the environment (prefix ``AIMASS_``) and CLI flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every limit and location the server uses; each field is an ``AIMASS_<NAME>`` variable."""

    model_config = SettingsConfigDict(env_prefix="AIMASS_", extra="ignore")

    home: Path = Field(default=Path.home() / ".aimass")
    """Where the SQLite registry, built-in model files and logs live."""

    database_url: str | None = None
    """SQLAlchemy URL of the registry; default is a SQLite file under ``home``."""

    migration_lock_timeout_s: float = Field(default=120.0, gt=0)
    """Longest a process waits for another one to finish migrating the registry's schema."""

    host: str = "127.0.0.1"
    """Address the HTTP server binds to."""

    port: int = 8000
    """Port the HTTP server binds to."""

    builtins: bool = True
    """Register and load the built-in models at start-up."""

    worker_mode: str = "process"
    """``process`` runs each replica in its own OS process; ``inprocess`` runs it in a thread."""

    cluster: str = ""
    """Where replicas run: empty for local worker processes (the default); ``auto`` (the Ray
    cluster this machine belongs to, started with ``ray start``), ``ray://HOST:PORT`` (Ray
    Client) or ``HOST:PORT`` (a cluster's GCS) to run each replica as a Ray actor there."""

    max_body_bytes: int = 16 * 1024 * 1024
    """Largest request body accepted (413 beyond it); uploads to ``/v1/files`` have their own
    limit, ``max_file_bytes``."""

    max_file_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    """Largest file ``POST /v1/files`` accepts (OpenAI's limit is 512 MB; 413 beyond it). The
    file streams to disk under ``home/files`` as it arrives, never whole in memory."""

    max_request_rows: int = 4096
    """Most rows (batch entries) one inference request may carry (413 beyond it)."""

    max_items_per_request: int = 2048
    """Most inputs (texts, documents) in one embeddings or rerank request."""

    max_tokens_ceiling: int = 4096
    """Largest ``max_tokens`` a generation request may ask for."""

    reconcile_interval_s: float = 2.0
    """How often the server re-reads the registry to pick up changes made elsewhere."""

    restart_backoff_s: float = 0.5
    """First wait before restarting a crashed replica; doubles on every further crash."""

    restart_backoff_max_s: float = 30.0
    """Longest wait between restarts of a crashed replica."""

    max_restarts: int = 5
    """Crashes within ``restart_window_s`` after which a model is marked failed."""

    restart_window_s: float = 300.0
    """Window in which crashes are counted towards ``max_restarts``."""

    load_timeout_s: float = 300.0
    """Longest time a replica may take to load its model."""

    strict_readiness: bool = False
    """Server readiness (``/health``, ``/v2/health/ready``) needs every model meant to be
    loaded to be ready; by default a model that failed to load does not hold it back (it stays
    failed in its own ready endpoint, ``aimass models list`` and metrics), only loading does."""

    trial_load_timeout_s: float = Field(default=120.0, ge=0)
    """Longest a registration's trial load (the model loaded once in a throwaway worker) may
    take; 0 skips trial loads (the files are still checked)."""

    artifact_link_min_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    """Model files at least this large are hard-linked into ``AIMASS_HOME/models`` instead of
    copied at registration, when on the same filesystem."""

    require_auth: bool | None = None
    """Require API keys; default: on when bound to a non-loopback address, off on loopback."""

    insecure: bool = False
    """Allow serving on a non-loopback address without any admin key."""

    auth_failure_delay_s: float = 0.5
    """Extra delay added per recent failed authentication from the same address (capped)."""

    usage_flush_interval_s: float = 1.0
    """How often batched usage counters are written to the database."""

    vector_store_default_model: str = "all-MiniLM-L6-v2"
    """Embedding model of a vector store created without ``embedding_model``."""

    vector_store_ingest_concurrency: int = Field(default=4, ge=1, le=64)
    """Files ingested into vector stores at once: the model's batcher packs their requests
    into full batches, so every replica stays busy even when files are small (one file of
    ~30 chunks filled one batch and left a second replica idle); lower it to shorten what the
    first searches after a quiet spell wait behind (docs/vector_stores.md, Ingestion)."""

    vector_store_embed_batch: int = Field(default=16, ge=1, le=1024)
    """Chunks per embedding request during ingestion: small, so that a search's query waits
    behind little ingestion work in the model's queue."""

    vector_store_embed_in_flight: int = Field(default=4, ge=1, le=64)
    """Embedding requests in flight per file during ingestion: enough for the model's batcher
    to merge them into full batches while each stays small."""

    vector_store_image_model: str = "efficientnet-lite0-embed"
    """Image-embedding model of a vector store created without ``image_model``, when the
    server serves it (image → image search); empty: none."""

    vector_store_ocr_model: str = "pp-ocrv4"
    """OCR model that reads the text of image files added to vector stores (text → image
    search); empty, or not served: image text is not read."""

    vector_store_label_model: str = "efficientnet-lite0"
    """Classifier whose top labels describe image files added to vector stores (text → image
    search); empty, or not served: no labels."""

    vector_store_image_labels: int = Field(default=3, ge=1, le=20)
    """How many of the classifier's top labels an image file is indexed with."""

    jobs_max_concurrent: int = Field(default=2, ge=1, le=64)
    """Jobs one server runs at once; more wait, queued, in the order they were made."""

    jobs_max_unfinished_per_key: int = Field(default=20, ge=1)
    """Unfinished jobs (queued or running) one API key may have; a new one is refused (429)."""

    jobs_max_attempts: int = Field(default=3, ge=1)
    """Times a job is started (first run, resumes after a crash, retries after an error)
    before it fails; a graceful restart does not count."""

    jobs_max_disk_bytes: int = Field(default=10 * 1024**3, ge=1)
    """Scratch space of running jobs (``home/jobs``): past it new jobs are refused (429) and a
    job that writes more fails, naming this setting."""

    jobs_lease_s: float = Field(default=15.0, gt=0)
    """How long a server holds a job without renewing it; a job whose server died is resumed
    by the next server to look once this has passed since its last renewal."""

    jobs_poll_interval_s: float = Field(default=1.0, gt=0)
    """How often the runner renews its leases, picks up cancels and claims waiting jobs."""

    batch_completion_window_s: float = Field(default=24 * 3600.0, gt=0)
    """What a batch's ``completion_window`` of ``24h`` means here: past it the batch ends
    ``expired`` with the answers it has (lower it to test expiry)."""

    batch_max_lines: int = Field(default=50_000, ge=1)
    """Most requests in one batch input file (OpenAI's limit)."""

    batch_max_in_flight: int = Field(default=16, ge=1, le=1024)
    """Lines of one batch sent to the model at once while the model has no online traffic
    (see ``batch_yield_s``). 16 keeps a 1,000-line MiniLM batch at 0.9x online throughput;
    64 gains little and lets the first online request after a quiet spell wait behind a whole
    batch (benchmarks/RESULTS.md, "Batches")."""

    batch_yield_s: float = Field(default=1.0, ge=0)
    """Online requests come first: while online calls of a model are open, and for this long
    after one, a batch keeps a single line of that model in flight."""

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'aimass.db'}"
