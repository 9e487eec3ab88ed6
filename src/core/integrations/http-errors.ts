/**
 * The errors of the outbound HTTP client (http-client.ts). Every failure is an `HttpClientError` with a
 * stable `code`, so a route or a job branches on the code, never on a message:
 *
 *   HTTP_STATUS           the peer answered a status >= 400 (after the retries it allowed): `status`, `body`
 *   HTTP_INVALID_JSON     a JSON helper got a body that is not JSON: `status`, `body` (the text)
 *   HTTP_TIMEOUT          an attempt (`scope: 'attempt'`) or the whole call with its retries (`scope: 'total'`) ran out of time
 *   HTTP_NETWORK          no answer: refused, reset, DNS… (`cause` is undici's error)
 *   HTTP_BODY_TOO_LARGE   the response body went past `maxResponseBytes`
 *   HTTP_AUTH             the credentials could not be obtained (an OAuth2 token endpoint refused or answered nonsense)
 *   HTTP_INVALID_OPTIONS  the client or the call was given bad options (a bug in the caller: fix the code)
 *
 * None of them is an AppError: if one escapes a route handler it is a 500 that hides its details, because
 * an upstream failure is not the client's fault. A route that wants to say "upstream failed" catches it.
 */
export type HttpErrorCode =
  | 'HTTP_STATUS'
  | 'HTTP_INVALID_JSON'
  | 'HTTP_TIMEOUT'
  | 'HTTP_NETWORK'
  | 'HTTP_BODY_TOO_LARGE'
  | 'HTTP_AUTH'
  | 'HTTP_INVALID_OPTIONS'

export class HttpClientError extends Error {
  constructor(
    readonly code: HttpErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.name = 'HttpClientError'
  }
}

/** Where a call went and how many attempts it took, for the errors raised by a call. */
export interface CallInfo {
  method: string
  /** Origin and path only: the query string may carry secrets. */
  url: string
  attempts: number
}

/** A status >= 400, or a body that does not parse as JSON. `body` is the parsed JSON when the response is JSON, else the text. */
export class HttpError extends HttpClientError {
  readonly status: number
  readonly body: unknown
  readonly headers: Record<string, string | string[] | undefined>
  readonly method: string
  readonly url: string
  readonly attempts: number
  constructor(
    code: 'HTTP_STATUS' | 'HTTP_INVALID_JSON',
    info: CallInfo & { status: number; body: unknown; headers: Record<string, string | string[] | undefined> },
    message?: string,
  ) {
    super(
      code,
      message ?? `${info.method} ${info.url} answered ${info.status}${info.attempts > 1 ? ` (after ${info.attempts} attempts)` : ''}`,
    )
    this.name = 'HttpError'
    this.status = info.status
    this.body = info.body
    this.headers = info.headers
    this.method = info.method
    this.url = info.url
    this.attempts = info.attempts
  }
}

export class HttpTimeoutError extends HttpClientError {
  constructor(
    readonly scope: 'attempt' | 'total',
    readonly timeoutMs: number,
    readonly info: CallInfo,
  ) {
    super(
      'HTTP_TIMEOUT',
      scope === 'attempt'
        ? `${info.method} ${info.url}: no complete answer within ${timeoutMs} ms (attempt ${info.attempts})`
        : `${info.method} ${info.url}: gave up after ${timeoutMs} ms in total (${info.attempts} attempt${info.attempts === 1 ? '' : 's'})`,
    )
    this.name = 'HttpTimeoutError'
  }
}

export class HttpNetworkError extends HttpClientError {
  constructor(
    readonly info: CallInfo,
    cause: unknown,
  ) {
    const reason = cause instanceof Error ? ((cause as { code?: string }).code ?? cause.message) : String(cause)
    super('HTTP_NETWORK', `${info.method} ${info.url}: ${reason}${info.attempts > 1 ? ` (after ${info.attempts} attempts)` : ''}`, {
      cause,
    })
    this.name = 'HttpNetworkError'
  }
}

export const invalidOptions = (message: string) => new HttpClientError('HTTP_INVALID_OPTIONS', message)
