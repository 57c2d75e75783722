"""cacheport's own settings, as data: the global keys, the ``[migration]`` and ``[mounts]`` tables, how an
environment variable names a setting, and every other ``CACHEPORT_*`` variable.

Only tables and names live here; reading and typing values is :mod:`cacheport.config`'s and :mod:`cacheport.values`'s.
"""

from __future__ import annotations

from cacheport.records import Option

ENV_PREFIX = "CACHEPORT_"
#: Settings that are not options of one backend.
GLOBAL_OPTIONS = (
    Option("backend", "The backend that holds the cache (`cacheport backends` lists them).", default=None),
    Option("key", "Scopes cache refs, so parallel jobs (targets, platforms, matrix axes) never collide."),
    Option("read-only", "Import only; never export.", type=bool, default=False),
    Option("trust", "Who writes the caches protected builds read: branch (every job that may write writes its "
           "branch's), protected (only protected pipelines; others write their own unprotected cache) or signed "
           "(protected, and protected pipelines sign their caches and import only signed ones). "
           "Unset: protected for tags, branch otherwise.", choices=("branch", "protected", "signed")),
    Option("trust-events", "Events that read only by default but may write, comma-separated: GitHub's "
           "pull_request_target, issue_comment, workflow_run, merge_group, ...; GitLab's merge_train."),
    Option("signers", "Under trust = signed: the Ed25519 public keys whose signatures protected builds accept, "
           "comma-separated, each the base64 of its DER form (openssl pkey -pubout -outform DER | base64 -w0)."),
    Option("signing-key-env", "Under trust = signed: the protected CI/CD variable holding the private key that "
           "protected pipelines sign with (PKCS#8, PEM or the base64 of its DER).", default="CACHE_SIGNING_KEY"),
    Option("signed-max-age", "Under trust = signed: how many days a signature stays good for, bounding a "
           "rollback to an older signed cache; 0 for no bound.", type=int, default=30),
    Option("signing", "Under trust = signed: key (an Ed25519 key pair: signers and signing-key-env) or keyless "
           "(a short-lived certificate for the CI job's OIDC identity: signer-identity, trusted-root, fulcio-url, "
           "id-token-env).", default="key", choices=("key", "keyless")),
    Option("signer-identity", "Under signing = keyless: whose certificates protected builds accept, as "
           "issuer=URL repository=PATH refs=REF,... (refs are globs; list protected refs only)."),
    Option("trusted-root", "Under signing = keyless: a PEM file of the root certificates a signing certificate "
           "must chain to (relative to the working directory)."),
    Option("fulcio-url", "Under signing = keyless: the Fulcio-compatible CA protected pipelines get their "
           "certificate from.", default="https://fulcio.sigstore.dev"),
    Option("id-token-env", "Under signing = keyless: the variable holding the job's OIDC token with the audience "
           "sigstore (GitLab: the id_tokens entry); on GitHub Actions, unset, it is asked for.",
           default="SIGSTORE_ID_TOKEN"),
    Option("mounts", "Restore the Dockerfile's cache mounts (RUN --mount=type=cache) before `cacheport build` and "
           "save them after it: on or off. Shorthand for [mounts] enabled.", choices=("on", "off")),
    Option("exports", "auto: from the branch's last build records, hold back an export whose name the build also "
           "imports when most of them executed no step (skipped when nothing changed, else an export-only pass "
           "writes it), and narrow a mode=max export the branch never reads to mode=min. when-changed: always "
           "hold such an export back, whatever the records say. always: export with the build, every time, as "
           "planned.", default="auto", choices=("auto", "when-changed", "always")),
    Option("history", "Keep a record of each build beside the cache, for `cacheport history`: on or off.",
           default="on", choices=("on", "off")),
    Option("history-keep", "Build records kept per branch, 1 or more; older ones are deleted.", type=int, default=30),
    Option("history-dir", "Where build records go when they are not kept in the backend's store (local, gha, s3, "
           "azblob, read-only jobs). Unset: ./cacheport-history in CI (an artifact), else under the cache "
           "directory."),
)
#: The table that moves the cache from one backend to another, and its keys.
MIGRATION = "migration"
PHASES = ("dual-read", "dual-write", "cutover")
MIGRATION_OPTIONS = (
    Option("from", "The backend the cache is moving away from; while migrating, builds also read (and in "
           "dual-write, write) it."),
    Option("phase", "dual-read: import from both, export to the new backend; dual-write: also export to the old "
           "one; cutover: the new backend only.", default="dual-read", choices=PHASES),
)
#: The table for cache mounts (``mounts = "off"`` is its ``enabled = false``), and its keys.
MOUNTS = "mounts"
MOUNTS_OPTIONS = (
    Option("enabled", "Restore the Dockerfile's cache mounts before `cacheport build` and save them after a "
           "successful one.", type=bool, default=True),
    Option("helper-image", "The image of the small builds that copy mount contents into and out of the builder; "
           "it needs a shell and tar (busybox has both).", default="busybox"),
    Option("max-size", "The largest one mount's archive (and its contents) may be: bytes, or a number with KiB, "
           "MiB, GiB (KB, MB, GB: powers of 1000). Over it, the mount is not saved.", default="2GiB"),
    Option("max-total", "The most all of a build's mount archives may take together; same units.",
           default="4GiB"),
)
#: Every CACHEPORT_* variable that is not a setting (``CACHEPORT_<GLOBAL>``, ``CACHEPORT_<BACKEND>__<OPTION>``),
#: and what reads it: anything else is a typo to warn about. The one list; a test holds the repository to it
#: (cacheport's own variables only: the test harness's are the tests' business).
OTHER_VARIABLES = {
    "CACHEPORT_CONFIG": "the config file, as --config",
    "CACHEPORT_LOAD_PLUGINS": "which third-party plugins load",
    "CACHEPORT_STRICT_PLUGINS": "a broken plugin is an error",
    "CACHEPORT_INSECURE_REGISTRIES": "registries spoken to over plain HTTP or unverified TLS",
    "CACHEPORT_DOCKER": "the docker client to run",
    "CACHEPORT_NONCE": "a build argument of the cache-mount helper builds, never read from the environment",
    # `args --format dotenv` writes these; GitLab hands them to later jobs as variables.
    "CACHEPORT_CACHE_FROM": "args --format dotenv output",
    "CACHEPORT_CACHE_TO": "args --format dotenv output",
    "CACHEPORT_TAGS": "args --format dotenv output",
    "CACHEPORT_BUILDX_ARGS": "args --format dotenv output",
}


def env_name(backend: str, option: str) -> str:
    """The environment variable that sets one backend option."""
    return f"{ENV_PREFIX}{backend.upper().replace('-', '_')}__{option.upper().replace('-', '_')}"
