/**
 * A GraphQL client (the seed's `GraphQLClient`) on graphql-request, sending through the kit's HTTP client
 * (http-client.ts): the same timeouts, retries, auth and log lines with the caller's context.
 *
 *   const shop = createGraphQLClient({ url: 'https://shop.example.com/graphql', auth: bearerAuth(token) })
 *   const { product } = await shop.withLogger(req.log).query<{ product: Product }>(PRODUCT, { id })
 *   for await (const page of shop.fetchPagesGenerator<Order>(ORDERS, { first: 100 }, { itemsPath: 'orders.edges.node' })) await save(page)
 *
 * - `execute` runs any document (a query is retried like a GET: it has no effect; a mutation is sent once unless
 *   `idempotencyKey` or `retryNonIdempotent`), `query` and `mutation` say which they expect;
 * - an answer with GraphQL `errors` is a `GraphQLRequestError` (code GRAPHQL_ERRORS) carrying the errors, the
 *   partial `data` and the HTTP status; transport failures stay the HTTP client's `HttpClientError`s;
 * - Relay cursor pagination, accumulated (`fetchPagesRelay`) or a page at a time (`fetchPagesGenerator`): the
 *   cursor from `cursorPath` goes into the variable `cursorVar` (default `after`) while `hasNextPath` is true.
 *   Paths are dotted; a path crossing a list applies the rest to each element (`orders.edges.node` gives the nodes).
 *   With `itemsPath` ending in `.edges`, `.edges.node` or `.nodes`, the cursor and has-next paths default to the
 *   connection's `pageInfo.endCursor` and `pageInfo.hasNextPage`.
 */
import type { DocumentNode } from 'graphql'
import { analyzeDocument, ClientError, GraphQLClient as RequestClient } from 'graphql-request'
import type { Logger } from 'pino'
import type { HttpAuth } from './http-auth.js'
import { createHttpClient, type HttpClient, type HttpClientOptions } from './http-client.js'
import { HttpClientError } from './http-errors.js'

export type GraphQLErrorCode = 'GRAPHQL_ERRORS' | 'GRAPHQL_BAD_PATH' | 'GRAPHQL_PAGINATION' | 'GRAPHQL_INVALID_OPTIONS'

export class GraphQLClientError extends Error {
  constructor(
    readonly code: GraphQLErrorCode,
    message: string,
  ) {
    super(message)
    this.name = 'GraphQLClientError'
  }
}

export interface GraphQLErrorItem {
  message: string
  path?: readonly (string | number)[]
  locations?: readonly { line: number; column: number }[]
  extensions?: Record<string, unknown>
}

/** The server answered with GraphQL errors: all of them, the partial data, the HTTP status. */
export class GraphQLRequestError extends GraphQLClientError {
  constructor(
    readonly errors: GraphQLErrorItem[],
    readonly data: unknown,
    readonly status: number,
    readonly operationName: string | undefined,
  ) {
    const first = errors[0]?.message ?? `HTTP ${status} without a GraphQL answer`
    super(
      'GRAPHQL_ERRORS',
      `${operationName ?? 'GraphQL operation'} failed: ${first}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''}`,
    )
    this.name = 'GraphQLRequestError'
  }
}

export type Document = string | DocumentNode
export type GraphQLVariables = Record<string, unknown>

export interface GraphQLClientOptions extends Omit<HttpClientOptions, 'baseUrl'> {
  /** The endpoint. */
  url: string
}

export interface ExecuteOptions {
  headers?: Record<string, string>
  signal?: AbortSignal
  /** A mutation is retried only with one of these (sent as Idempotency-Key) … */
  idempotencyKey?: string
  /** … or this. */
  retryNonIdempotent?: boolean
}

export interface RelayOptions {
  /** Where the page's items are in `data`, e.g. 'repository.issues.edges.node' or 'users.nodes'. */
  itemsPath: string
  /** The next page's cursor (default: the connection's pageInfo.endCursor). */
  cursorPath?: string
  /** Whether there is a next page (default: the connection's pageInfo.hasNextPage). */
  hasNextPath?: string
  /** The variable the cursor goes into (default 'after'). */
  cursorVar?: string
  /** Stop with GRAPHQL_PAGINATION past this many pages (default 1000): a server that never says "no more" doesn't loop forever. */
  maxPages?: number
  headers?: Record<string, string>
  signal?: AbortSignal
}

export interface GraphQLApi {
  /** Any operation; resolves with `data`. */
  execute<T = unknown>(document: Document, variables?: GraphQLVariables, opts?: ExecuteOptions): Promise<T>
  /** A query (a mutation document is refused). */
  query<T = unknown>(document: Document, variables?: GraphQLVariables, opts?: ExecuteOptions): Promise<T>
  /** A mutation (a query document is refused). */
  mutation<T = unknown>(document: Document, variables?: GraphQLVariables, opts?: ExecuteOptions): Promise<T>
  /** Every page's items, in order. */
  fetchPagesRelay<Item = unknown>(document: Document, variables: GraphQLVariables | undefined, opts: RelayOptions): Promise<Item[]>
  /** One array of items per page, fetched as the loop asks for it. */
  fetchPagesGenerator<Item = unknown>(
    document: Document,
    variables: GraphQLVariables | undefined,
    opts: RelayOptions,
  ): AsyncGenerator<Item[], void, undefined>
  /** The same client logging to `logger` (req.log, ctx.logger). */
  withLogger(logger: Logger): GraphQLApi
  readonly http: HttpClient
  close(): Promise<void>
}

const invalid = (message: string) => new GraphQLClientError('GRAPHQL_INVALID_OPTIONS', message)
const PATH = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/

function checkPath(name: string, path: unknown): string[] {
  if (typeof path !== 'string' || !PATH.test(path))
    throw invalid(`${name} must be a dotted path of field names (e.g. "users.edges.node"), got ${JSON.stringify(path)}`)
  return path.split('.')
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return `an object with ${Object.keys(value as object).join(', ') || 'no fields'}`
  return `${typeof value} ${JSON.stringify(value)}`
}

/**
 * The value at a dotted path; a list met on the way has the rest of the path applied to each element.
 * A missing field is GRAPHQL_BAD_PATH naming the path so far and the fields that are there.
 */
export function valueAt(data: unknown, segments: readonly string[], name: string): unknown {
  const walk = (value: unknown, i: number, at: string): unknown => {
    if (i === segments.length) return value
    if (Array.isArray(value)) return value.map((v, n) => walk(v, i, `${at}[${n}]`))
    const key = segments[i]!
    if (typeof value !== 'object' || value === null || !Object.hasOwn(value, key))
      throw new GraphQLClientError(
        'GRAPHQL_BAD_PATH',
        `${name} "${segments.join('.')}": no field "${key}" at ${at || 'data'} (found ${describe(value)})`,
      )
    return walk((value as Record<string, unknown>)[key], i + 1, at ? `${at}.${key}` : key)
  }
  return walk(data, 0, '')
}

function connectionDefault(items: string[], leaf: 'endCursor' | 'hasNextPage', name: string): string[] {
  const n = items.length
  const conn =
    items[n - 1] === 'nodes' || items[n - 1] === 'edges'
      ? items.slice(0, -1)
      : items[n - 2] === 'edges' && items[n - 1] === 'node'
        ? items.slice(0, -2)
        : undefined
  if (!conn || conn.length === 0) throw invalid(`${name} is required when itemsPath does not end in .edges, .edges.node or .nodes`)
  return [...conn, 'pageInfo', leaf]
}

export function createGraphQLClient(options: GraphQLClientOptions): GraphQLApi {
  if (typeof options !== 'object' || options === null) throw invalid('options must be an object')
  const { url, ...httpOptions } = options
  if (typeof url !== 'string') throw invalid('url is required')
  let endpoint: URL
  try {
    endpoint = new URL(url)
  } catch {
    throw invalid(`url "${url}" is not a valid URL`)
  }
  if (endpoint.protocol !== 'http:' && endpoint.protocol !== 'https:') throw invalid(`url must be http or https, not ${endpoint.protocol}`)
  const root = createHttpClient({ name: endpoint.host, ...httpOptions })
  return make(root, endpoint.toString())
}

/** The seed's `from_url`: a client for an endpoint with an optional bearer token. */
export function graphqlClientFromUrl(url: string, opts: { auth?: HttpAuth; logger?: Logger } = {}): GraphQLApi {
  return createGraphQLClient({ url, ...opts })
}

function headerRecord(h: HeadersInit | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  new Headers(h).forEach((v, k) => {
    out[k] = v
  })
  return out
}

function make(http: HttpClient, url: string): GraphQLApi {
  /** graphql-request's fetch, sent through the HTTP client; `retryable` is decided per operation. */
  const fetchVia =
    (extra: ExecuteOptions, retryable: boolean): typeof fetch =>
    async (input, init = {}) => {
      const res = await http.request(init.method ?? 'POST', String(input instanceof Request ? input.url : input), {
        headers: { ...headerRecord(init.headers), ...extra.headers },
        ...(typeof init.body === 'string' ? { body: init.body } : {}),
        throwHttpErrors: false,
        retryNonIdempotent: retryable || extra.retryNonIdempotent === true,
        ...(extra.idempotencyKey !== undefined ? { idempotencyKey: extra.idempotencyKey } : {}),
        ...(extra.signal ? { signal: extra.signal } : {}),
      })
      const headers = new Headers()
      for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v)
      const empty = res.body.length === 0 || res.status === 204 || res.status === 304
      return new Response(empty ? null : new Uint8Array(res.body), { status: res.status, headers })
    }

  async function run<T>(
    document: Document,
    variables: GraphQLVariables | undefined,
    opts: ExecuteOptions,
    expect?: 'query' | 'mutation',
  ): Promise<T> {
    if (
      typeof document !== 'string' &&
      (typeof document !== 'object' || document === null || (document as DocumentNode).kind !== 'Document')
    )
      throw invalid('document must be a GraphQL string or a parsed DocumentNode')
    if (variables !== undefined && (typeof variables !== 'object' || variables === null || Array.isArray(variables)))
      throw invalid('variables must be an object')
    const { isMutation, operationName } = analyzeDocument(document)
    if (expect === 'query' && isMutation)
      throw invalid(`query() was given a mutation${operationName ? ` (${operationName})` : ''}: use mutation()`)
    if (expect === 'mutation' && !isMutation)
      throw invalid(`mutation() was given a query${operationName ? ` (${operationName})` : ''}: use query()`)
    const client = new RequestClient(url, { fetch: fetchVia(opts, !isMutation) })
    try {
      return await client.request<T>({ document, ...(variables ? { variables } : {}) })
    } catch (err) {
      if (err instanceof ClientError) {
        const errors = (err.response.errors ?? []) as GraphQLErrorItem[]
        throw new GraphQLRequestError(errors, err.response.data ?? null, err.response.status, operationName)
      }
      if (err instanceof HttpClientError || err instanceof GraphQLClientError) throw err
      if (opts.signal?.aborted) throw err
      // graphql-request's own parse failure: a 2xx whose body is not a GraphQL answer
      throw new GraphQLRequestError([{ message: `not a GraphQL response: ${(err as Error).message}` }], null, 200, operationName)
    }
  }

  async function* pages<Item>(
    document: Document,
    variables: GraphQLVariables | undefined,
    opts: RelayOptions,
  ): AsyncGenerator<Item[], void, undefined> {
    if (typeof opts !== 'object' || opts === null) throw invalid('pagination options (itemsPath…) are required')
    const items = checkPath('itemsPath', opts.itemsPath)
    const cursorPath =
      opts.cursorPath === undefined ? connectionDefault(items, 'endCursor', 'cursorPath') : checkPath('cursorPath', opts.cursorPath)
    const hasNextPath =
      opts.hasNextPath === undefined ? connectionDefault(items, 'hasNextPage', 'hasNextPath') : checkPath('hasNextPath', opts.hasNextPath)
    const cursorVar = opts.cursorVar ?? 'after'
    if (typeof cursorVar !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(cursorVar))
      throw invalid(`cursorVar must be a variable name, got ${JSON.stringify(cursorVar)}`)
    const maxPages = opts.maxPages ?? 1000
    if (!Number.isInteger(maxPages) || maxPages < 1) throw invalid(`maxPages must be a positive integer, got ${maxPages}`)
    const seen = new Set<string>()
    let cursor: string | null | undefined = (variables?.[cursorVar] as string | null | undefined) ?? undefined
    for (let page = 1; ; page++) {
      const data: unknown = await run<unknown>(
        document,
        { ...variables, ...(cursor !== undefined ? { [cursorVar]: cursor } : {}) },
        { ...(opts.headers ? { headers: opts.headers } : {}), ...(opts.signal ? { signal: opts.signal } : {}) },
        'query',
      )
      const found = valueAt(data, items, 'itemsPath')
      if (!Array.isArray(found))
        throw new GraphQLClientError('GRAPHQL_BAD_PATH', `itemsPath "${opts.itemsPath}" is ${describe(found)}, not a list`)
      const hasNext = valueAt(data, hasNextPath, 'hasNextPath')
      if (typeof hasNext !== 'boolean')
        throw new GraphQLClientError('GRAPHQL_BAD_PATH', `hasNextPath "${hasNextPath.join('.')}" is ${describe(hasNext)}, not a boolean`)
      const next: unknown = hasNext ? valueAt(data, cursorPath, 'cursorPath') : undefined
      yield found as Item[]
      if (!hasNext) return
      if (typeof next !== 'string' || next.length === 0)
        throw new GraphQLClientError(
          'GRAPHQL_BAD_PATH',
          `cursorPath "${cursorPath.join('.')}" is ${describe(next)} while there is a next page`,
        )
      if (seen.has(next))
        throw new GraphQLClientError('GRAPHQL_PAGINATION', `the server gave cursor ${JSON.stringify(next)} twice: stopping`)
      if (page >= maxPages) throw new GraphQLClientError('GRAPHQL_PAGINATION', `more than maxPages (${maxPages}) pages`)
      seen.add(next)
      cursor = next
    }
  }

  return {
    execute: (document, variables, opts = {}) => run(document, variables, opts),
    query: (document, variables, opts = {}) => run(document, variables, opts, 'query'),
    mutation: (document, variables, opts = {}) => run(document, variables, opts, 'mutation'),
    async fetchPagesRelay<Item>(document: Document, variables: GraphQLVariables | undefined, opts: RelayOptions) {
      const all: Item[] = []
      for await (const page of pages<Item>(document, variables, opts)) all.push(...page)
      return all
    },
    fetchPagesGenerator: pages,
    withLogger: (logger) => make(http.withLogger(logger), url),
    http,
    close: () => http.close(),
  }
}
