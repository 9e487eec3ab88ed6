/**
 * The kit's stable error codes: what `code` in an error body `{ statusCode, error, message, code }` can
 * be, each with the status it comes with and what it means. Clients branch on these codes, so a code is
 * never renamed. The error helpers (errors.ts) accept only a declared code, and only with its status:
 * `notFound('PROJECT_NOT_FOUND', …)` compiles, `badRequest('PROJECT_NOT_FOUND', …)` does not. The OpenAPI
 * document lists them all (`x-error-codes`, and the Error schema's `code` points there).
 *
 * The core's codes are below; a feature declares its own the same way as its jobs, next to its routes:
 *
 *   export const THING_ERROR_CODES = { THING_NOT_FOUND: { status: 404, description: 'No such thing' } } as const satisfies ErrorCodeTable
 *   declare module '../../core/lib/error-codes.js' { interface ErrorCodes extends ErrorCodesOf<typeof THING_ERROR_CODES> {} }
 *
 * and lists the table in its manifest (`errors: THING_ERROR_CODES`), which puts it in the document.
 */

export interface ErrorCodeInfo {
  /** The status it comes with (a list for the rare code answered with two, e.g. USER_DISABLED at login and on a session). */
  status: number | readonly number[]
  description: string
}
export type ErrorCodeTable = Readonly<Record<string, ErrorCodeInfo>>
type StatusOf<S> = S extends readonly (infer N)[] ? N : S
/** A table's codes with their status, for `interface ErrorCodes extends ErrorCodesOf<typeof MY_ERROR_CODES> {}`. */
export type ErrorCodesOf<T extends ErrorCodeTable> = { [K in keyof T]: StatusOf<T[K]['status']> }

export const CORE_ERROR_CODES = {
  // Requests the framework refuses (src/core/plugins/errors.ts)
  VALIDATION_ERROR: { status: 400, description: 'The body, query, parameters or headers do not match the route’s schema' },
  INVALID_BODY: { status: 400, description: 'The body is not valid JSON (or empty where one is required)' },
  INVALID_CHARACTERS: { status: 400, description: 'The request contains characters that cannot be stored (NUL)' },
  INVALID_CONTENT_LENGTH: { status: 400, description: 'Content-Length is invalid, repeated, or sent with Transfer-Encoding' },
  MALFORMED_REQUEST: { status: 400, description: 'The request could not be parsed as HTTP' },
  BAD_URL: { status: 400, description: 'The URL is not valid (bad percent-encoding)' },
  BAD_REQUEST: { status: 400, description: 'The request was refused before reaching a route, for another reason' },
  CSRF_INVALID: { status: 403, description: 'A cookie-authenticated write without a valid x-csrf-token (GET /auth/csrf)' },
  NOT_FOUND: { status: 404, description: 'No such route' },
  REQUEST_TIMEOUT: { status: 408, description: 'The request was not received in time' },
  BODY_TOO_LARGE: { status: 413, description: 'The body is over the size limit (1 MiB)' },
  URI_TOO_LONG: { status: 414, description: 'A path parameter is over the length limit' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, description: 'The body is not application/json' },
  RATE_LIMITED: { status: 429, description: 'Too many requests: wait for the time in Retry-After' },
  HEADERS_TOO_LARGE: { status: 431, description: 'The request headers are too large' },
  CLIENT_CLOSED_REQUEST: { status: 499, description: 'The client went away before the answer (logged, never received)' },
  INTERNAL_ERROR: { status: 500, description: 'A bug on our side (details are logged, never returned)' },
  SERVICE_UNAVAILABLE: { status: 503, description: 'A service this request needs (database, Redis) is unavailable or too slow: retry' },
  // Who is calling (src/core/identity)
  UNAUTHENTICATED: { status: 401, description: 'No logged-in session (or it ended)' },
  SESSION_EXPIRED: { status: 401, description: 'The session is past its absolute lifetime: log in again' },
  SESSION_REVOKED: { status: 401, description: 'The session was ended by a change to the account (password, logout everywhere)' },
  SESSION_REQUIRED: { status: 401, description: 'This route needs a logged-in session; API keys are accepted only under /api' },
  INVALID_API_KEY: { status: 401, description: 'The API key is unknown, revoked, expired or no longer its creator’s to use' },
  METRICS_TOKEN_REQUIRED: { status: 401, description: '/metrics needs its bearer token' },
  EMAIL_NOT_VERIFIED: { status: 403, description: 'This action needs a verified email address' },
  USER_DISABLED: { status: [403, 401], description: 'A platform admin disabled the account: login refuses it (403), its session ends (401)' },
  EMAIL_TAKEN: { status: 409, description: 'Another account has this email address' },
  WEAK_PASSWORD: { status: 400, description: 'The password does not meet the password policy' },
  PASSWORD_TOO_LONG: { status: 400, description: 'The password is over the maximum length' },
  UNKNOWN_USER: { status: 404, description: 'No account with this email address' },
  TOKEN_MALFORMED: { status: 400, description: 'The emailed token is not well-formed' },
  TOKEN_NOT_FOUND: { status: 404, description: 'No such emailed token (or it was replaced by a newer one)' },
  TOKEN_USED: { status: 409, description: 'The emailed token was already used' },
  TOKEN_STALE: { status: 409, description: 'The emailed token was sent to an address the account no longer has' },
  TOKEN_EXPIRED: { status: 410, description: 'The emailed token has expired: ask for a new one' },
  // The tenant guard and tenancy engine (src/core/plugins/tenancy.ts, src/core/tenancy)
  TENANT_REQUIRED: { status: 400, description: 'No tenant given: X-Tenant-ID, /t/:tenant/…, a subdomain or the session’s active tenant' },
  INVALID_TENANT_REF: { status: 400, description: 'The tenant reference is not a valid slug or id' },
  TENANT_CONFLICT: { status: 400, description: 'The request names more than one tenant (header, path and subdomain disagree)' },
  TENANT_NOT_FOUND: { status: 404, description: 'No such tenant, or you are not a member (the two look the same)' },
  TENANT_SUSPENDED: { status: 403, description: 'The tenant is suspended' },
  TENANT_NOT_READY: { status: 409, description: 'The tenant is still being set up (or its setup failed)' },
  INSUFFICIENT_ROLE: { status: 403, description: 'Your role (or an API key’s) is below what this action needs, and no grant allows it' },
  API_KEY_NOT_ALLOWED: { status: 403, description: 'This action needs a logged-in person; API keys cannot manage people or credentials' },
  LAST_OWNER: { status: 403, description: 'The tenant’s last owner cannot be demoted or removed' },
  ALREADY_MEMBER: { status: 409, description: 'This person is a member of the tenant already' },
  POOL_EXHAUSTED: { status: 503, description: 'The tenant’s database connections are all busy: retry after Retry-After' },
  TENANT_MOVING: { status: 503, description: 'The tenant is moving to another database: writes are paused (reads work); retry after Retry-After' },
  MOVE_NOT_NEEDED: { status: 409, description: 'The tenant is already where the move would take it' },
  MOVE_IN_PROGRESS: { status: 409, description: 'The tenant has a move in flight (elsewhere, or it would be deleted under it): let that move finish, or abort it, first' },
  MOVE_NOT_FOUND: { status: 404, description: 'No such tenant move' },
  UNKNOWN_SERVER: { status: 400, description: 'No database server of this name' },
  TENANT_NOT_MOVABLE: { status: 409, description: 'The tenant cannot move now: it is not active or suspended, its deletion is queued, or it is not on the current tenant migration (run tenants migrate first)' },
  POOL_CLOSED: { status: 503, description: 'The tenant pool manager is shut down (the process is stopping)' },
  INVALID_SLUG: { status: 400, description: 'The tenant slug is not valid (or reserved)' },
  INVALID_ISOLATION: { status: 400, description: 'A tenant\'s isolation is database or shared' },
  SHARED_ISOLATION_OFF: { status: 400, description: 'Shared isolation was asked for, but this deployment has no shared database (SHARED_DATABASE_URL)' },
  INVALID_SERVER: { status: 400, description: 'A database server name, URL, role or number is malformed, or a shared tenant was asked to go to a server that holds no shared database' },
  SERVER_NOT_FOUND: { status: 404, description: 'No database server of that name (core_db_servers)' },
  SERVER_EXISTS: { status: 409, description: 'A database server of that name exists already' },
  SERVER_DRAINING: { status: 409, description: 'The database server is draining: it takes no new tenants' },
  SERVER_NOT_DRAINING: { status: 409, description: 'Only a draining database server can be removed: drain it first (its tenants move elsewhere)' },
  SERVER_NOT_EMPTY: { status: 409, description: 'The database server still holds tenants (databases, shared tenants, soft-deleted ones), rows in its shared database, or moves in flight: it cannot be removed (details.holds)' },
  SERVER_NOT_REMOVABLE: { status: 409, description: 'The default database server (the config\'s TENANT_DATABASE_URL / DATABASE_URL) cannot be removed' },
  SERVER_UNREACHABLE: { status: 503, description: 'The database server did not answer, so it could not be checked (or changed): try again when it is up' },
  NO_SERVER_AVAILABLE: { status: 503, description: 'No active database server has room for a new tenant (all full or draining)' },
  INVALID_NAME: { status: 400, description: 'The tenant name is not valid' },
  UNKNOWN_OWNER: { status: 400, description: 'The tenant’s owner user does not exist' },
  SLUG_TAKEN: { status: 409, description: 'Another tenant has this slug' },
  TENANT_QUOTA_EXCEEDED: { status: 403, description: 'You have created as many tenants as you may (MAX_TENANTS_PER_USER): delete one first' },
  INVALID_TRANSITION: { status: 409, description: 'The tenant’s status does not allow this lifecycle event' },
  TENANT_BUSY: { status: 409, description: 'Another lifecycle run holds this tenant: retry later' },
  PRECONDITION_FAILED: { status: 409, description: 'The tenant changed since it was chosen for this lifecycle event (e.g. restored before a scheduled purge): not run' },
  PROVISIONING_FAILED: { status: 503, description: 'Setting the tenant up failed; it is marked failed and can be retried' },
  // Jobs (src/core/jobs)
  UNKNOWN_JOB_TYPE: { status: 400, description: 'No job of this name is registered' },
  INVALID_JOB_PAYLOAD: { status: 400, description: 'The job payload does not match the job’s schema' },
  INVALID_JOB_ID: { status: 400, description: 'The job id is not a UUID' },
  INVALID_CURSOR: { status: 400, description: 'The pagination cursor is not valid' },
  JOB_NOT_FOUND: { status: 404, description: 'No such job in this tenant' },
  QUEUE_UNAVAILABLE: { status: 503, description: 'The job queue (Redis) is unavailable: nothing was queued' },
  // Data helpers (src/core/data)
  INVALID_MONEY: { status: 400, description: 'The amount is not a valid money amount for its currency (format, decimals or range)' },
  UNKNOWN_QUERY: { status: 404, description: 'No named query with this id is registered' },
  INVALID_QUERY_PARAMS: { status: 400, description: 'The named query’s parameters are missing, extra or of the wrong type (details.errors)' },
  INVALID_ROWS: { status: 400, description: 'Rows given to a bulk helper are not valid (empty key, unknown column, mixed shapes)' },
  // Email (src/core/email/errors.ts)
  EMAIL_MESSAGE_INVALID: { status: 400, description: 'The email message (to, template, variables) is not valid' },
  EMAIL_TEMPLATE_NAME_INVALID: { status: 400, description: 'The email template name is not a plain file name' },
  EMAIL_TEMPLATE_NOT_FOUND: { status: 404, description: 'No email template of this name' },
  EMAIL_TEMPLATE_INVALID: { status: 500, description: 'The email template file is malformed' },
  EMAIL_VARIABLES_MISSING: { status: 400, description: 'The email template’s placeholders lack values (details.missing)' },
  EMAIL_UNSAFE_URL: { status: 400, description: 'A link target variable is not an http(s) or mailto URL' },
} as const satisfies ErrorCodeTable

/** Every code the program declares with its status: the core's, and each feature's (declaration merging). */
export interface ErrorCodes extends ErrorCodesOf<typeof CORE_ERROR_CODES> {}
export type ErrorCode = keyof ErrorCodes & string
/** The codes declared with status S (any code when S is just `number`). */
export type ErrorCodeFor<S extends number> = number extends S ? ErrorCode : { [K in ErrorCode]: S extends ErrorCodes[K] ? K : never }[ErrorCode]

/** The kit's table: the core's codes and every feature's (a code declared twice must agree on its status). */
export function assembleErrorCodes(tables: readonly ErrorCodeTable[]): ErrorCodeTable {
  const all: Record<string, ErrorCodeInfo> = {}
  for (const table of tables)
    for (const [code, info] of Object.entries(table)) {
      const known = all[code]
      if (known && String(known.status) !== String(info.status))
        throw new Error(`error code ${code} is declared with status ${known.status} and ${info.status}`)
      all[code] = known ?? info
    }
  return all
}
