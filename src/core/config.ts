/**
 * Configuration, read once from the environment and validated at boot.
 * Every variable is declared here with its default and a one-line description; .env.example mirrors
 * this table (test/env-example.test.ts keeps the two in step). A missing or malformed value throws a
 * ConfigError whose message names the variable, and the entry points print that one line and exit.
 */

type Kind = 'string' | 'int' | 'bool' | 'url' | 'list' | 'enum'

interface VarSpec {
  kind: Kind
  default?: string
  doc: string
  values?: readonly string[]
  min?: number
  max?: number
}

export const ENV_VARS = {
  NODE_ENV: { kind: 'enum', values: ['development', 'test', 'production'], default: 'development', doc: 'Runtime mode' },
  HOST: { kind: 'string', default: '0.0.0.0', doc: 'HTTP listen address' },
  PORT: { kind: 'int', default: '3000', min: 0, max: 65535, doc: 'HTTP listen port' },
  LOG_LEVEL: {
    kind: 'enum',
    values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    default: 'info',
    doc: 'pino log level',
  },
  LOG_FILE: {
    kind: 'string',
    default: '',
    doc: 'Also write every log line, as JSON, to this file (its folder is created; unset: standard output only)',
  },
  TRUST_PROXY: { kind: 'bool', default: 'false', doc: 'Trust X-Forwarded-* headers (behind a load balancer)' },
  METRICS_TOKEN: {
    kind: 'string',
    default: '',
    doc: 'Bearer token Prometheus sends to GET /metrics (unset: open outside production, off in production)',
  },
  METRICS_TOP_TENANTS: {
    kind: 'int',
    default: '20',
    min: 0,
    max: 1000,
    doc: 'GET /metrics counts requests per tenant for this many busiest tenants by name; the rest are summed as tenant="other" (bounded label cardinality)',
  },
  RATE_LIMIT_MAX: {
    kind: 'int',
    default: '1000',
    min: 1,
    max: 1000000000,
    doc: 'Requests per client per window, all routes (login/signup have stricter limits)',
  },
  RATE_LIMIT_WINDOW_S: { kind: 'int', default: '60', min: 1, max: 86400, doc: 'Rate limit window in seconds' },
  REQUEST_DEADLINE_MS: {
    kind: 'int',
    default: '10000',
    min: 0,
    max: 600000,
    doc: 'A request not answered after this long gets 503 SERVICE_UNAVAILABLE with Retry-After, whatever its handler waits on (0 = none; a streaming route opts out with config.requestDeadline: false)',
  },
  PRESSURE_MAX_EVENT_LOOP_DELAY_MS: {
    kind: 'int',
    default: '1000',
    min: 0,
    max: 600000,
    doc: 'Shed load: while the event loop lags more than this (mean over a sample), new requests get 503 SERVICE_UNAVAILABLE with Retry-After (0 = off; /health, /health/ready and /metrics are never shed)',
  },
  PRESSURE_MAX_HEAP_USED_PCT: {
    kind: 'int',
    default: '90',
    min: 0,
    max: 100,
    doc: 'Shed load while the V8 heap holds more than this percentage of its limit (--max-old-space-size) (0 = off)',
  },
  PRESSURE_SAMPLE_INTERVAL_MS: {
    kind: 'int',
    default: '1000',
    min: 10,
    max: 60000,
    doc: 'How often event loop delay and heap usage are sampled for load shedding',
  },
  APP_NAME: { kind: 'string', default: 'Tenantkit', doc: 'Product name used in emails and the OpenAPI title' },
  APP_BASE_URL: { kind: 'url', default: 'http://localhost:3000', doc: 'Public base URL, used for OAuth and Stripe redirects' },

  DATABASE_URL: { kind: 'url', default: '', doc: 'Host database URL; unset in development starts an embedded Postgres' },
  DB_TYPE: {
    kind: 'enum',
    values: ['POSTGRESQL'],
    default: 'POSTGRESQL',
    doc: 'Alternative to DATABASE_URL, the host DB in parts (only PostgreSQL)',
  },
  DB_USER: { kind: 'string', default: '', doc: 'Host DB user (the parts are used when DATABASE_URL is unset and DB_HOST is set)' },
  DB_PASS: { kind: 'string', default: '', doc: 'Host DB password (with DB_HOST)' },
  DB_HOST: { kind: 'string', default: '', doc: 'Host DB host name: set it (without DATABASE_URL) to give the URL in parts' },
  DB_PORT: { kind: 'int', default: '5432', min: 1, max: 65535, doc: 'Host DB port (with DB_HOST)' },
  DB_NAME: { kind: 'string', default: 'app_host', doc: 'Host DB name (with DB_HOST)' },
  TENANT_DATABASE_URL: {
    kind: 'url',
    default: '',
    doc: 'Server (and credentials) tenant databases are created on; defaults to DATABASE_URL',
  },
  TENANT_DB_PREFIX: { kind: 'string', default: 'tk', doc: 'Prefix of tenant and template database names' },
  SHARED_DATABASE_URL: {
    kind: 'url',
    default: '',
    doc: "The shared database of shared-isolation tenants, with the credentials of its data role (not the tables' owner, no BYPASSRLS); unset: every tenant gets a database of its own",
  },
  TENANT_ISOLATION: {
    kind: 'string',
    default: 'plan',
    doc: "Isolation of new tenants that name none: plan (the plan's `isolation` in config/plans.json), database or shared",
  },
  PLACEMENT_BY: {
    kind: 'string',
    default: 'count',
    doc: 'How the default placement weighs database servers: count (tenants on each) or size (pg_database_size of each server, read at most once a minute)',
  },
  SHARED_POOL_MAX: {
    kind: 'int',
    default: '10',
    min: 1,
    max: 1000,
    doc: 'Connections of the one pool every shared tenant uses (counted in POOL_CONNECTION_BUDGET)',
  },
  AUTO_MIGRATE: { kind: 'bool', default: '', doc: 'Run host migrations at boot (default: on outside production)' },

  REDIS_URL: { kind: 'url', default: 'redis://127.0.0.1:6379', doc: 'Redis for sessions, queues, rate limits and cache invalidation (rediss:// for TLS; a private CA is trusted through NODE_EXTRA_CA_CERTS)' },
  REDIS_PREFIX: { kind: 'string', default: 'tk', doc: 'Prefix of every Redis key and BullMQ queue of this deployment' },
  REDIS_CLUSTER: {
    kind: 'bool',
    default: 'false',
    doc: 'REDIS_URL is one node (or the configuration endpoint) of a Redis Cluster: the clients discover the others, its user, password and rediss:// apply to all; queues and multi-key scripts get hash-tagged keys (docs/scaling.md)',
  },
  REDIS_COMMAND_TIMEOUT_MS: {
    kind: 'int',
    default: '1000',
    min: 50,
    max: 600000,
    doc: 'A request-path Redis command (session, rate limit, cache) fails after this long; the request answers 503',
  },
  REDIS_MAX_RECONNECT_DELAY_MS: {
    kind: 'int',
    default: '1000',
    min: 50,
    max: 60000,
    doc: 'Cap of the growing delay between Redis reconnect attempts (so service resumes soon after Redis returns)',
  },

  ENCRYPTION_KEYS: {
    kind: 'list',
    default: '',
    doc: 'id:base64(32 bytes) pairs, newest first, that encrypt tenant DB URLs (required in production)',
  },

  POOL_MAX_PER_TENANT: {
    kind: 'int',
    default: '5',
    min: 1,
    max: 100,
    doc: 'Connections in one tenant pool (catalog max_connections can lower it)',
  },
  POOL_MAX_TENANTS: { kind: 'int', default: '50', min: 1, max: 100000, doc: 'Tenant pools kept open (LRU)' },
  POOL_IDLE_TIMEOUT_S: { kind: 'int', default: '60', min: 1, max: 86400, doc: 'Close a tenant pool unused for this long' },
  POOL_CONNECTION_BUDGET: { kind: 'int', default: '60', min: 1, max: 10000, doc: 'Max tenant connections this process holds at once' },
  POOL_ACQUIRE_TIMEOUT_MS: { kind: 'int', default: '2000', min: 1, max: 600000, doc: 'Wait this long for budget before answering 503' },
  HOST_POOL_MAX: { kind: 'int', default: '10', min: 1, max: 1000, doc: 'Connections in the host database pool' },
  DB_CONNECT_TIMEOUT_MS: {
    kind: 'int',
    default: '1500',
    min: 100,
    max: 600000,
    doc: 'Host and tenant pools give up opening a connection after this long; the request answers 503',
  },
  DB_STATEMENT_TIMEOUT_MS: {
    kind: 'int',
    default: '30000',
    min: 0,
    max: 86400000,
    doc: 'statement_timeout of host and tenant pool sessions (0 = none); migrations use their own connections',
  },
  POOLER_PREPARED_STATEMENTS: {
    kind: 'bool',
    default: 'false',
    doc: "Tenants' pooler URLs keep named prepared statements across transactions (PgBouncer >= 1.21 with max_prepared_statements); false: statements through a pooler go unnamed",
  },
  CATALOG_CACHE_TTL_S: { kind: 'int', default: '60', min: 0, max: 86400, doc: 'Seconds a tenant catalog entry stays cached' },

  SESSION_SECRETS: { kind: 'list', default: '', doc: 'Cookie signing secrets (>= 32 chars), newest first; required in production' },
  SESSION_MAX_AGE_S: { kind: 'int', default: '3600', min: 1, max: 31536000, doc: 'Sliding session lifetime: seconds of inactivity' },
  SESSION_ABSOLUTE_MAX_S: {
    kind: 'int',
    default: '0',
    min: 0,
    max: 31536000,
    doc: 'Hard session lifetime regardless of activity (0 = none)',
  },
  SESSION_CACHE_TTL_MS: {
    kind: 'int',
    default: '5000',
    min: 0,
    max: 60000,
    doc: 'Milliseconds a session read from Redis stays cached in the process (0 = off); logout and saves drop it in every process at once',
  },
  COOKIE_SECURE: { kind: 'bool', default: '', doc: 'Secure cookies (default: on in production)' },
  TENANT_DOMAIN_SUFFIX: { kind: 'string', default: '', doc: 'Resolve tenants from subdomains of this domain, e.g. app.example.com' },
  PLATFORM_ADMIN_EMAILS: {
    kind: 'list',
    default: '',
    doc: 'Bootstrap platform admins: these emails reach /admin once VERIFIED (e.g. signed in with Google); grant others with npm run users -- grant-admin EMAIL',
  },

  GOOGLE_CLIENT_ID: { kind: 'string', default: '', doc: 'OAuth client id (Google or any OIDC provider)' },
  GOOGLE_CLIENT_SECRET: { kind: 'string', default: '', doc: 'OAuth client secret' },
  OAUTH_ISSUER_URL: {
    kind: 'url',
    default: 'https://accounts.google.com',
    doc: 'OIDC issuer; its discovery document configures the endpoints',
  },

  SMTP_HOST: { kind: 'string', default: '', doc: 'SMTP server; unset logs mail instead of sending it (not allowed in production)' },
  SMTP_PORT: { kind: 'int', default: '587', min: 1, max: 65535, doc: 'SMTP port' },
  SMTP_USER: { kind: 'string', default: '', doc: 'SMTP user' },
  SMTP_PASSWORD: { kind: 'string', default: '', doc: 'SMTP password' },
  SMTP_MAIL_FROM: { kind: 'string', default: 'no-reply@localhost', doc: 'From address' },
  SMTP_STARTTLS: { kind: 'bool', default: 'true', doc: 'Require STARTTLS' },
  SMTP_SSL: { kind: 'bool', default: 'false', doc: 'Implicit TLS (port 465)' },
  EMAIL_TEMPLATES_DIR: { kind: 'string', default: '', doc: 'Folder whose *.md templates override the built-in ones' },
  IMPORT_DIR: {
    kind: 'string',
    default: '.data/imports',
    doc: 'Where uploaded import files (POST /api/projects/import) wait for their job; the API and the worker must share it',
  },
  IMPORT_MAX_BYTES: {
    kind: 'int',
    default: '52428800',
    min: 1024,
    max: 10737418240,
    doc: 'Largest import upload accepted (bytes); larger is 413 BODY_TOO_LARGE',
  },

  EXPORT_DIR: {
    kind: 'string',
    default: '.data/exports',
    doc: 'Where tenant exports (POST /api/tenant/export) wait for their one download, 24 h at most; the API and the worker must share it',
  },
  CONTENT_DIR: { kind: 'string', default: 'content', doc: 'Folder of the site content: blog/*.md posts with front matter, served at /blog (reloaded on change in development)' },
  BLOG_PAGE_SIZE: { kind: 'int', default: '10', min: 1, max: 100, doc: 'Posts per page of GET /blog' },
  SITEMAP_PATHS: { kind: 'list', default: '/', doc: 'Comma-separated paths of static pages listed in /sitemap.xml besides the blog (e.g. /,/pricing)' },


  JOB_TENANT_CONCURRENCY: { kind: 'int', default: '2', min: 1, max: 1000, doc: 'Jobs of one tenant running at once across workers' },
  WORKER_CONCURRENCY: { kind: 'int', default: '10', min: 1, max: 1000, doc: 'Jobs one worker process runs at once' },
  WORKER_SHUTDOWN_TIMEOUT_MS: { kind: 'int', default: '30000', min: 0, max: 600000, doc: 'On SIGTERM, wait this long for running jobs' },
  OUTBOX_SWEEP_INTERVAL_MS: {
    kind: 'int',
    default: '5000',
    min: 0,
    max: 3600000,
    doc: 'How often the API and worker processes submit outbox jobs still owed (e.g. after a Redis outage); one process at a time; 0: this process never sweeps',
  },
  JOB_RECONCILE_INTERVAL_MS: {
    kind: 'int',
    default: '60000',
    min: 0,
    max: 86400000,
    doc: 'How often a worker reconciles job records with the queue: re-queues records Redis lost, finishes records whose write was lost (0: never)',
  },
  JOB_RECONCILE_AFTER_MS: {
    kind: 'int',
    default: '300000',
    min: 0,
    max: 86400000,
    doc: 'Only records pending or running and unchanged for this long are reconciled',
  },
  MAX_TENANTS_PER_USER: {
    kind: 'int',
    default: '5',
    min: 1,
    max: 100000,
    doc: 'Tenants one user may have created and not deleted (POST /tenants answers 403 TENANT_QUOTA_EXCEEDED past it)',
  },
  TENANT_CREATES_PER_HOUR: {
    kind: 'int',
    default: '5',
    min: 1,
    max: 100000,
    doc: 'POST /tenants per user per hour, counted in Redis across instances (429 RATE_LIMITED past it)',
  },
  PROVISION_INLINE: {
    kind: 'bool',
    default: 'false',
    doc: 'Provision new tenants inside the request instead of through the queue (single-process setups, tests)',
  },
  WORKER_IN_PROCESS: {
    kind: 'bool',
    default: '',
    doc: 'Also run the job workers inside the API process (development convenience; default: on in development)',
  },
  PROVISION_STALE_AFTER_S: {
    kind: 'int',
    default: '600',
    min: 1,
    max: 604800,
    doc: 'A tenant still provisioning, unchanged this long and held by no run, is stale: tenants list flags it, the sweep resumes it',
  },
  PROVISION_SWEEP_INTERVAL_S: {
    kind: 'int',
    default: '300',
    min: 0,
    max: 86400,
    doc: 'How often the worker resumes stale provisioning tenants, one sweeper at a time across processes (0 = never)',
  },
  PROVISION_STATEMENT_TIMEOUT_MS: {
    kind: 'int',
    default: '60000',
    min: 100,
    max: 3600000,
    doc: 'statement_timeout and lock_timeout of the provisioner maintenance connections (CREATE/DROP DATABASE, template and tenant locks)',
  },
  TENANT_RETENTION_DAYS: {
    kind: 'int',
    default: '30',
    min: 0,
    max: 3650,
    doc: 'Soft-deleted tenants are hard-deleted (database dropped) this many days after deletion, by the nightly tenants.purge_deleted job',
  },
  CREDENTIAL_RETENTION_DAYS: {
    kind: 'int',
    default: '30',
    min: 0,
    max: 3650,
    doc: 'Expired or used user tokens, expired or revoked API keys, and expired or closed invitations and ownership offers are deleted this many days later (nightly)',
  },
  JOB_RECORD_RETENTION_DAYS: {
    kind: 'int',
    default: '30',
    min: 1,
    max: 3650,
    doc: 'Finished system job records (sys_jobs) are deleted this many days after they finished (nightly); pending and running ones are kept',
  },

  STRIPE_SECRET_KEY: { kind: 'string', default: '', doc: 'Stripe secret key; unset disables billing routes (503 BILLING_DISABLED)' },
  STRIPE_WEBHOOK_SECRET: { kind: 'string', default: '', doc: 'Stripe webhook signing secret (whsec_…)' },
  STRIPE_BASE_URL: { kind: 'url', default: '', doc: 'Base URL for checkout/portal redirects (defaults to APP_BASE_URL)' },
  STRIPE_API_HOST: { kind: 'string', default: '', doc: 'Override the Stripe API host (tests point it at a local fake)' },
  STRIPE_MONTHLY_PRICE_ID: {
    kind: 'string',
    default: '',
    doc: 'Stripe price id of the paid plan’s monthly interval (the pro plan’s stripePriceMonthly in config/plans.json)',
  },
  STRIPE_YEARLY_PRICE_ID: {
    kind: 'string',
    default: '',
    doc: 'Stripe price id of the paid plan’s yearly interval (the pro plan’s stripePriceYearly in config/plans.json)',
  },
  STRIPE_ENTERPRISE_MONTHLY_PRICE_ID: {
    kind: 'string',
    default: '',
    doc: 'Monthly price id of the enterprise plan (config/plans.json, read by db:seed)',
  },
  STRIPE_ENTERPRISE_YEARLY_PRICE_ID: {
    kind: 'string',
    default: '',
    doc: 'Yearly price id of the enterprise plan (config/plans.json, read by db:seed)',
  },
  STRIPE_ONE_TIME_PRICES: {
    kind: 'list',
    default: '',
    doc: 'Comma-separated Stripe price ids sold by one-time checkout (POST /api/billing/checkout/one-time); besides these only plan prices are accepted',
  },
  BILLING_GRACE_DAYS: { kind: 'int', default: '7', min: 0, max: 365, doc: 'Days a past_due subscription still counts as active' },
  BILLING_SUSPEND_AFTER_GRACE: {
    kind: 'bool',
    default: 'true',
    doc: 'Suspend a tenant whose subscription is still unpaid when the grace period ends (resumed when paid)',
  },
  STRIPE_WEBHOOK_RETENTION_DAYS: {
    kind: 'int',
    default: '90',
    min: 7,
    max: 3650,
    doc: 'Stripe webhook ledger rows are deleted this many days after they were received (nightly); must exceed how long Stripe redelivers (3 days)',
  },

  GITHUB_WEBHOOK_SECRET: {
    kind: 'string',
    default: '',
    doc: 'Secret of the GitHub webhook (POST /webhooks/github, X-Hub-Signature-256); unset: the route is not mounted (404)',
  },
  WEBHOOKS_ALLOW_PRIVATE: {
    kind: 'bool',
    default: 'false',
    doc: 'Let outbound webhook endpoints resolve to private, loopback or link-local addresses (tests, on-premises); refused in production',
  },
  WEBHOOKS_TIMEOUT_MS: {
    kind: 'int',
    default: '10000',
    min: 100,
    max: 60000,
    doc: 'How long one outbound webhook delivery may take (connect to response) before it counts as failed',
  },
  WEBHOOK_RETENTION_DAYS: {
    kind: 'int',
    default: '30',
    min: 1,
    max: 3650,
    doc: 'Processed inbound webhook ledger rows (nightly) and outbound delivery log rows (as new events fan out) are deleted this many days after they were received or created',
  },
  WEBHOOKS_DISABLE_AFTER: {
    kind: 'int',
    default: '20',
    min: 1,
    max: 10000,
    doc: 'An outbound webhook endpoint is disabled (and its tenant owners emailed) after this many consecutive failed deliveries',
  },

  REALTIME_ALLOWED_ORIGINS: {
    kind: 'list',
    default: '',
    doc: 'Origins (scheme://host[:port], comma-separated) whose pages may open GET /api/events/ws, besides APP_BASE_URL’s; a WebSocket handshake from any other Origin is 403',
  },
  REALTIME_MAX_PER_TENANT: {
    kind: 'int',
    default: '1000',
    min: 0,
    max: 1000000,
    doc: 'Open realtime connections (SSE and WebSocket) per tenant, counted across every instance in Redis (429 REALTIME_CONNECTION_LIMIT past it; 0 = no cap)',
  },
  REALTIME_MAX_PER_USER: {
    kind: 'int',
    default: '10',
    min: 0,
    max: 100000,
    doc: 'Open realtime connections per user (all tenants, every instance; 429 REALTIME_CONNECTION_LIMIT past it; 0 = no cap)',
  },
  REALTIME_HEARTBEAT_S: {
    kind: 'int',
    default: '15',
    min: 1,
    max: 300,
    doc: 'Seconds between heartbeats on realtime connections (an SSE comment line, a WebSocket ping); a WebSocket that missed a pong is closed',
  },
  REALTIME_REPLAY_MAX: {
    kind: 'int',
    default: '1000',
    min: 0,
    max: 100000,
    doc: 'Events kept per tenant (a Redis stream, trimmed approximately) for SSE Last-Event-ID resume',
  },
  REALTIME_REPLAY_TTL_S: {
    kind: 'int',
    default: '3600',
    min: 1,
    max: 604800,
    doc: 'A tenant’s replay buffer expires this long after its last event',
  },
  REALTIME_MAX_BUFFER_KB: {
    kind: 'int',
    default: '512',
    min: 1,
    max: 1048576,
    doc: 'A realtime client whose unsent data exceeds this (KiB, in the process) is disconnected: a slow reader never makes the server buffer without bound',
  },
} as const satisfies Record<string, VarSpec>

export type EnvName = keyof typeof ENV_VARS

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`)
    this.name = 'ConfigError'
  }
}

/** What the app plugin hands every plugin and route plugin it registers. */
export interface AppOptions {
  config: Config
}

export interface Config {
  env: 'development' | 'test' | 'production'
  host: string
  port: number
  logLevel: string
  /** LOG_FILE: JSON log lines also appended here. */
  logFile: string | undefined
  /** EXPORT_DIR: tenant export archives until downloaded (or 24 h old). */
  exportDir: string
  trustProxy: boolean
  appBaseUrl: string
  appName: string
  metricsToken: string | undefined
  /** Tenants given their own series in tenant_http_requests_total; the rest are "other". */
  metricsTopTenants: number
  rateLimit: { max: number; windowS: number }
  /** Load shedding thresholds (core/plugins/external/under-pressure.ts); 0 turns a check off. */
  pressure: { maxEventLoopDelayMs: number; maxHeapUsedPct: number; sampleIntervalMs: number }
  /** Whole-request deadline in ms (0: none). */
  requestDeadlineMs: number
  /** Site content (CONTENT_DIR): the blog, its page size, and the static pages the sitemap lists. */
  content: { dir: string; pageSize: number; sitemapPaths: string[] }
  /** Uploaded import files (IMPORT_DIR), shared by the API and the worker, and the largest upload (IMPORT_MAX_BYTES). */
  imports: { dir: string; maxBytes: number }
  /** Host database URL; undefined means "start embedded Postgres" (development only). */
  databaseUrl: string | undefined
  tenantDatabaseUrl: string | undefined
  tenantDbPrefix: string
  /** Shared isolation: the shared database's URL (its data role); undefined: shared isolation is off. */
  sharedDatabaseUrl: string | undefined
  /** Isolation of new tenants that name none: from their plan, or one mode for all. */
  tenantIsolation: 'plan' | 'database' | 'shared'
  /** The default placement's measure of a server's load: its tenant count, or its databases' size. */
  placementBy: 'count' | 'size'
  autoMigrate: boolean
  redisUrl: string
  redisPrefix: string
  /** REDIS_URL names a node of a Redis Cluster (lib/redis.ts builds `Redis.Cluster` clients; keys that must share a slot are hash-tagged). */
  redisCluster: boolean
  /** Request-path Redis clients: per-command timeout and the cap of the reconnect backoff. */
  redisTimeouts: { commandMs: number; maxReconnectDelayMs: number }
  encryptionKeys: { id: string; key: Buffer }[]
  pool: {
    maxPerTenant: number
    maxTenants: number
    idleTimeoutS: number
    connectionBudget: number
    acquireTimeoutMs: number
    hostMax: number
    /** The shared database's pool (one per process, inside connectionBudget). */
    sharedMax: number
    catalogTtlS: number
    /** postgres.js connect_timeout of host and tenant pools. */
    connectTimeoutMs: number
    /** statement_timeout of host and tenant pool sessions; 0 = none. */
    statementTimeoutMs: number
    /** Tenants' poolers keep named prepared statements across transactions (PgBouncer >= 1.21); else unnamed through a pooler. */
    poolerPreparedStatements: boolean
  }
  session: { secrets: string[]; maxAgeS: number; absoluteMaxS: number; cacheTtlMs: number; cookieSecure: boolean }
  tenantDomainSuffix: string | undefined
  platformAdminEmails: string[]
  oauth: { clientId: string; clientSecret: string; issuerUrl: string } | undefined
  smtp: {
    host: string | undefined
    port: number
    user: string
    password: string
    from: string
    startTls: boolean
    ssl: boolean
    templatesDir: string | undefined
  }
  /** Each tenant is a database: how many a user may create (not deleted), and how fast. */
  tenantQuota: { maxPerUser: number; createsPerHour: number }
  jobs: {
    tenantConcurrency: number
    workerConcurrency: number
    shutdownTimeoutMs: number
    /** Outbox sweep period (src/core/jobs/outbox.ts); 0 turns the sweep off in this process. */
    outboxSweepIntervalMs: number
    reconcileIntervalMs: number
    reconcileAfterMs: number
    /** Signup and POST /tenants provision in the request (true) or register the tenant and queue the rest (false). */
    provisionInline: boolean
    /** src/server.ts also starts the job workers (so `npm run dev` needs no second process). */
    workerInProcess: boolean
  }
  /** Tenant provisioning: how long a maintenance statement may block, and when a half-made tenant is stale. */
  provisioning: {
    statementTimeoutMs: number
    staleAfterS: number
    /** The worker's stale sweep; 0 = off. */
    sweepIntervalS: number
  }
  stripe:
    | {
        secretKey: string
        webhookSecret: string
        baseUrl: string
        apiHost: string | undefined
        monthlyPriceId: string | undefined
        yearlyPriceId: string | undefined
        /** STRIPE_ONE_TIME_PRICES: what one-time checkout sells (with the plans' prices), and what its webhook fulfils. */
        oneTimePriceIds: string[]
      }
    | undefined
  billingGraceDays: number
  /** Days before nightly housekeeping deletes what is no longer needed (src/core/housekeeping, billing's ledger trim). */
  retention: { tenantDays: number; credentialDays: number; jobRecordDays: number; stripeWebhookDays: number }
  /** Suspend a tenant still past due after the grace period (a job), and resume it when it pays. */
  billingSuspendAfterGrace: boolean
  /** Inbound webhook secrets (src/features/inbound-webhooks) and outbound delivery policy (src/features/webhooks). */
  webhooks: {
    githubSecret: string | undefined
    allowPrivateTargets: boolean
    timeoutMs: number
    disableAfterFailures: number
    retentionDays: number
  }
  /** Realtime streams (src/features/realtime): who may open a WebSocket, connection caps, heartbeats, replay, backpressure. */
  realtime: {
    /** Origins allowed to open a WebSocket: APP_BASE_URL's and REALTIME_ALLOWED_ORIGINS. */
    allowedOrigins: string[]
    maxPerTenant: number
    maxPerUser: number
    heartbeatMs: number
    replayMax: number
    replayTtlMs: number
    maxBufferBytes: number
  }
}

// Development-only fallbacks: fixed so sessions and encrypted URLs survive restarts; refused in production.
const DEV_ENCRYPTION_KEY = 'dev:ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE='
const DEV_SESSION_SECRET = 'dev-only-session-secret-change-me-in-production-please'

function read(env: NodeJS.ProcessEnv, name: EnvName): string {
  const spec: VarSpec = ENV_VARS[name]
  const raw = env[name]
  return raw === undefined || raw === '' ? (spec.default ?? '') : raw.trim()
}

function parse(env: NodeJS.ProcessEnv, name: EnvName): string | number | boolean | string[] {
  const spec: VarSpec = ENV_VARS[name]
  const value = read(env, name)
  switch (spec.kind) {
    case 'int': {
      if (!/^-?\d+$/.test(value)) throw new ConfigError(name, `must be an integer, got "${value}"`)
      const n = Number(value)
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
        throw new ConfigError(name, `must be between ${spec.min} and ${spec.max}, got ${n}`)
      }
      return n
    }
    case 'bool': {
      if (value === '') return ''
      if (/^(1|true|yes|on)$/i.test(value)) return true
      if (/^(0|false|no|off)$/i.test(value)) return false
      throw new ConfigError(name, `must be true or false, got "${value}"`)
    }
    case 'url': {
      if (value === '') return ''
      try {
        new URL(value)
      } catch {
        throw new ConfigError(name, `must be a URL, got "${value}"`)
      }
      return value
    }
    case 'list':
      return value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    case 'enum':
      if (!spec.values?.includes(value)) throw new ConfigError(name, `must be one of ${spec.values?.join('|')}, got "${value}"`)
      return value
    default:
      return value
  }
}

function parseKeys(entries: string[]): { id: string; key: Buffer }[] {
  return entries.map((entry) => {
    const [id, b64] = entry.split(':')
    const key = Buffer.from(b64 ?? '', 'base64')
    if (!id || !/^[a-zA-Z0-9_-]+$/.test(id) || key.length !== 32) {
      throw new ConfigError('ENCRYPTION_KEYS', 'each entry must be id:base64 of exactly 32 bytes (openssl rand -base64 32)')
    }
    return { id, key }
  })
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const s = (n: EnvName) => parse(env, n) as string
  const i = (n: EnvName) => parse(env, n) as number
  const b = (n: EnvName, fallback: boolean) => {
    const v = parse(env, n)
    return v === '' ? fallback : (v as boolean)
  }
  const l = (n: EnvName) => parse(env, n) as string[]
  const opt = (v: string) => (v === '' ? undefined : v)

  const nodeEnv = s('NODE_ENV') as Config['env']
  const production = nodeEnv === 'production'

  let databaseUrl = opt(s('DATABASE_URL'))
  if (!databaseUrl && s('DB_HOST')) {
    const user = encodeURIComponent(s('DB_USER') || 'postgres')
    const pass = s('DB_PASS') ? `:${encodeURIComponent(s('DB_PASS'))}` : ''
    databaseUrl = `postgres://${user}${pass}@${s('DB_HOST')}:${i('DB_PORT')}/${encodeURIComponent(s('DB_NAME'))}`
  }
  if (!databaseUrl && nodeEnv !== 'development') {
    throw new ConfigError('DATABASE_URL', 'is required (or DB_HOST/DB_USER/DB_PASS/DB_NAME); only development starts an embedded Postgres')
  }

  const prefix = s('TENANT_DB_PREFIX')
  if (!/^[a-z][a-z0-9_]{0,15}$/.test(prefix))
    throw new ConfigError('TENANT_DB_PREFIX', 'must be lowercase letters, digits or _, starting with a letter, at most 16 chars')

  const sharedDatabaseUrl = opt(s('SHARED_DATABASE_URL'))
  const tenantIsolation = s('TENANT_ISOLATION') as Config['tenantIsolation']
  if (!['plan', 'database', 'shared'].includes(tenantIsolation))
    throw new ConfigError('TENANT_ISOLATION', 'must be plan, database or shared')
  if (tenantIsolation === 'shared' && !sharedDatabaseUrl) throw new ConfigError('TENANT_ISOLATION', 'shared needs SHARED_DATABASE_URL')
  const placementBy = s('PLACEMENT_BY') as Config['placementBy']
  if (placementBy !== 'count' && placementBy !== 'size') throw new ConfigError('PLACEMENT_BY', 'must be count or size')

  let keys = l('ENCRYPTION_KEYS')
  if (keys.length === 0) {
    if (production) throw new ConfigError('ENCRYPTION_KEYS', 'is required in production (id:base64 of 32 random bytes)')
    keys = [DEV_ENCRYPTION_KEY]
  }

  let secrets = l('SESSION_SECRETS')
  if (secrets.length === 0) {
    if (production) throw new ConfigError('SESSION_SECRETS', 'is required in production')
    secrets = [DEV_SESSION_SECRET]
  }
  if (secrets.some((x) => x.length < 32)) throw new ConfigError('SESSION_SECRETS', 'every secret must be at least 32 characters')

  const smtpHost = opt(s('SMTP_HOST'))
  if (production && !smtpHost) throw new ConfigError('SMTP_HOST', 'is required in production (mail would only be logged)')

  const clientId = s('GOOGLE_CLIENT_ID')
  const stripeKey = s('STRIPE_SECRET_KEY')
  if (stripeKey && !s('STRIPE_WEBHOOK_SECRET')) throw new ConfigError('STRIPE_WEBHOOK_SECRET', 'is required when STRIPE_SECRET_KEY is set')

  // An endpoint a tenant registers must not reach our own network (SSRF): only tests and on-premises setups may allow it.
  if (production && b('WEBHOOKS_ALLOW_PRIVATE', false))
    throw new ConfigError('WEBHOOKS_ALLOW_PRIVATE', 'must not be true in production (tenants could reach internal addresses)')

  const badPath = l('SITEMAP_PATHS').find((p) => !/^\/[^\s?#]*$/.test(p))
  if (badPath !== undefined) throw new ConfigError('SITEMAP_PATHS', `must be absolute paths like /pricing, got "${badPath}"`)
  const oneTimePriceIds = l('STRIPE_ONE_TIME_PRICES')
  const badPrice = oneTimePriceIds.find((id) => !/^price_[A-Za-z0-9_]+$/.test(id))
  if (badPrice !== undefined) throw new ConfigError('STRIPE_ONE_TIME_PRICES', `must be Stripe price ids (price_…), got "${badPrice}"`)

  const config: Config = {
    env: nodeEnv,
    host: s('HOST'),
    port: i('PORT'),
    logLevel: s('LOG_LEVEL'),
    logFile: opt(s('LOG_FILE')),
    exportDir: s('EXPORT_DIR'),
    trustProxy: b('TRUST_PROXY', false),
    appBaseUrl: s('APP_BASE_URL').replace(/\/$/, ''),
    appName: s('APP_NAME'),
    metricsToken: opt(s('METRICS_TOKEN')),
    metricsTopTenants: i('METRICS_TOP_TENANTS'),
    rateLimit: { max: i('RATE_LIMIT_MAX'), windowS: i('RATE_LIMIT_WINDOW_S') },
    requestDeadlineMs: i('REQUEST_DEADLINE_MS'),
    imports: { dir: s('IMPORT_DIR'), maxBytes: i('IMPORT_MAX_BYTES') },
    content: { dir: s('CONTENT_DIR'), pageSize: i('BLOG_PAGE_SIZE'), sitemapPaths: l('SITEMAP_PATHS') },
    pressure: {
      maxEventLoopDelayMs: i('PRESSURE_MAX_EVENT_LOOP_DELAY_MS'),
      maxHeapUsedPct: i('PRESSURE_MAX_HEAP_USED_PCT'),
      sampleIntervalMs: i('PRESSURE_SAMPLE_INTERVAL_MS'),
    },
    databaseUrl,
    tenantDatabaseUrl: opt(s('TENANT_DATABASE_URL')),
    tenantDbPrefix: prefix,
    sharedDatabaseUrl,
    tenantIsolation,
    placementBy,
    autoMigrate: b('AUTO_MIGRATE', !production),
    redisUrl: s('REDIS_URL'),
    redisPrefix: s('REDIS_PREFIX'),
    redisCluster: b('REDIS_CLUSTER', false),
    redisTimeouts: { commandMs: i('REDIS_COMMAND_TIMEOUT_MS'), maxReconnectDelayMs: i('REDIS_MAX_RECONNECT_DELAY_MS') },
    encryptionKeys: parseKeys(keys),
    pool: {
      maxPerTenant: i('POOL_MAX_PER_TENANT'),
      maxTenants: i('POOL_MAX_TENANTS'),
      idleTimeoutS: i('POOL_IDLE_TIMEOUT_S'),
      connectionBudget: i('POOL_CONNECTION_BUDGET'),
      acquireTimeoutMs: i('POOL_ACQUIRE_TIMEOUT_MS'),
      hostMax: i('HOST_POOL_MAX'),
      sharedMax: i('SHARED_POOL_MAX'),
      catalogTtlS: i('CATALOG_CACHE_TTL_S'),
      connectTimeoutMs: i('DB_CONNECT_TIMEOUT_MS'),
      statementTimeoutMs: i('DB_STATEMENT_TIMEOUT_MS'),
      poolerPreparedStatements: b('POOLER_PREPARED_STATEMENTS', false),
    },
    session: {
      secrets,
      maxAgeS: i('SESSION_MAX_AGE_S'),
      absoluteMaxS: i('SESSION_ABSOLUTE_MAX_S'),
      cacheTtlMs: i('SESSION_CACHE_TTL_MS'),
      cookieSecure: b('COOKIE_SECURE', production),
    },
    tenantDomainSuffix: opt(s('TENANT_DOMAIN_SUFFIX')),
    platformAdminEmails: l('PLATFORM_ADMIN_EMAILS').map((e) => e.toLowerCase()),
    oauth: clientId ? { clientId, clientSecret: s('GOOGLE_CLIENT_SECRET'), issuerUrl: s('OAUTH_ISSUER_URL') } : undefined,
    smtp: {
      host: smtpHost,
      port: i('SMTP_PORT'),
      user: s('SMTP_USER'),
      password: s('SMTP_PASSWORD'),
      from: s('SMTP_MAIL_FROM'),
      startTls: b('SMTP_STARTTLS', true),
      ssl: b('SMTP_SSL', false),
      templatesDir: opt(s('EMAIL_TEMPLATES_DIR')),
    },
    tenantQuota: { maxPerUser: i('MAX_TENANTS_PER_USER'), createsPerHour: i('TENANT_CREATES_PER_HOUR') },
    jobs: {
      tenantConcurrency: i('JOB_TENANT_CONCURRENCY'),
      workerConcurrency: i('WORKER_CONCURRENCY'),
      shutdownTimeoutMs: i('WORKER_SHUTDOWN_TIMEOUT_MS'),
      outboxSweepIntervalMs: i('OUTBOX_SWEEP_INTERVAL_MS'),
      reconcileIntervalMs: i('JOB_RECONCILE_INTERVAL_MS'),
      reconcileAfterMs: i('JOB_RECONCILE_AFTER_MS'),
      provisionInline: b('PROVISION_INLINE', false),
      workerInProcess: b('WORKER_IN_PROCESS', nodeEnv === 'development'),
    },
    provisioning: {
      statementTimeoutMs: i('PROVISION_STATEMENT_TIMEOUT_MS'),
      staleAfterS: i('PROVISION_STALE_AFTER_S'),
      sweepIntervalS: i('PROVISION_SWEEP_INTERVAL_S'),
    },
    stripe: stripeKey
      ? {
          secretKey: stripeKey,
          webhookSecret: s('STRIPE_WEBHOOK_SECRET'),
          baseUrl: (s('STRIPE_BASE_URL') || s('APP_BASE_URL')).replace(/\/$/, ''),
          apiHost: opt(s('STRIPE_API_HOST')),
          monthlyPriceId: opt(s('STRIPE_MONTHLY_PRICE_ID')),
          yearlyPriceId: opt(s('STRIPE_YEARLY_PRICE_ID')),
          oneTimePriceIds,
        }
      : undefined,
    billingGraceDays: i('BILLING_GRACE_DAYS'),
    retention: {
      tenantDays: i('TENANT_RETENTION_DAYS'),
      credentialDays: i('CREDENTIAL_RETENTION_DAYS'),
      jobRecordDays: i('JOB_RECORD_RETENTION_DAYS'),
      stripeWebhookDays: i('STRIPE_WEBHOOK_RETENTION_DAYS'),
    },
    billingSuspendAfterGrace: b('BILLING_SUSPEND_AFTER_GRACE', true),
    webhooks: {
      githubSecret: opt(s('GITHUB_WEBHOOK_SECRET')),
      allowPrivateTargets: b('WEBHOOKS_ALLOW_PRIVATE', false),
      timeoutMs: i('WEBHOOKS_TIMEOUT_MS'),
      disableAfterFailures: i('WEBHOOKS_DISABLE_AFTER'),
      retentionDays: i('WEBHOOK_RETENTION_DAYS'),
    },
    realtime: {
      allowedOrigins: [
        ...new Set([
          new URL(s('APP_BASE_URL')).origin,
          ...l('REALTIME_ALLOWED_ORIGINS').map((o) => originOf('REALTIME_ALLOWED_ORIGINS', o)),
        ]),
      ],
      maxPerTenant: i('REALTIME_MAX_PER_TENANT'),
      maxPerUser: i('REALTIME_MAX_PER_USER'),
      heartbeatMs: i('REALTIME_HEARTBEAT_S') * 1000,
      replayMax: i('REALTIME_REPLAY_MAX'),
      replayTtlMs: i('REALTIME_REPLAY_TTL_S') * 1000,
      maxBufferBytes: i('REALTIME_MAX_BUFFER_KB') * 1024,
    },
  }
  return config
}

/** `scheme://host[:port]` of an origin given in `variable` (a path or a malformed URL is a ConfigError). */
function originOf(variable: EnvName, value: string): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new ConfigError(variable, `must list origins (scheme://host[:port]), got "${value}"`)
  }
  if (url.origin === 'null' || value.replace(/\/$/, '') !== url.origin)
    throw new ConfigError(variable, `must list origins (scheme://host[:port]), got "${value}"`)
  return url.origin
}

/** Entry points call this: a bad config prints one line naming the variable and exits 1. */
export function loadConfigOrExit(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig(env)
  } catch (err) {
    exitOnConfigError(err)
  }
}

/** A ConfigError (also one found at boot, e.g. pools that don't fit max_connections) prints one line and exits 1; anything else is rethrown. */
export function exitOnConfigError(err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`Invalid configuration: ${err.message}\n`)
    process.exit(1)
  }
  throw err
}
