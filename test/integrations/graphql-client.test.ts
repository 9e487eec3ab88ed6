/**
 * The GraphQL client (src/core/integrations/graphql-client.ts) against a real graphql-yoga server started
 * here: execute/query/mutation, GraphQL errors as a typed error with the partial data, Relay pagination over
 * 10 pages accumulated and streamed, retries (a query is retried, a mutation is not), bad paths and options.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { parse } from 'graphql'
import { createSchema, createYoga } from 'graphql-yoga'
import pino from 'pino'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { bearerAuth } from '../../src/core/integrations/http-auth.js'
import {
  createGraphQLClient,
  type GraphQLClientError,
  type GraphQLApi,
  GraphQLRequestError,
  valueAt,
} from '../../src/core/integrations/graphql-client.js'

const ITEMS = Array.from({ length: 95 }, (_, i) => ({ id: String(i + 1), name: `item ${i + 1}` }))
const cursorOf = (i: number) => Buffer.from(`item:${i}`).toString('base64')
const indexOf = (cursor: string) => Number(Buffer.from(cursor, 'base64').toString().replace('item:', ''))

let added = 0
let requests: { auth: string | undefined; query: string }[] = []
/** The next N requests get 503 before reaching GraphQL. */
let failNext = 0

const yoga = createYoga({
  logging: false,
  maskedErrors: false,
  schema: createSchema({
    typeDefs: /* GraphQL */ `
      type Item { id: ID!, name: String! }
      type ItemEdge { cursor: String!, node: Item! }
      type PageInfo { endCursor: String, hasNextPage: Boolean! }
      type ItemConnection { edges: [ItemEdge!]!, nodes: [Item!]!, pageInfo: PageInfo!, totalCount: Int! }
      type Query {
        hello(name: String!): String!
        items(first: Int!, after: String): ItemConnection!
        stuck(first: Int!, after: String): ItemConnection!
        boom: String
      }
      type Mutation { addItem(name: String!): Item! }
    `,
    resolvers: {
      Query: {
        hello: (_: unknown, { name }: { name: string }) => `hello ${name}`,
        items: (_: unknown, { first, after }: { first: number; after?: string }) => {
          const start = after ? indexOf(after) + 1 : 0
          const slice = ITEMS.slice(start, start + first)
          const edges = slice.map((node, i) => ({ cursor: cursorOf(start + i), node }))
          return {
            edges,
            nodes: slice,
            totalCount: ITEMS.length,
            pageInfo: { endCursor: edges.at(-1)?.cursor ?? null, hasNextPage: start + first < ITEMS.length },
          }
        },
        // A broken server: always "more", always the same cursor.
        stuck: () => ({ edges: [], nodes: [], totalCount: 0, pageInfo: { endCursor: 'same', hasNextPage: true } }),
        boom: () => {
          throw new Error('the resolver broke')
        },
      },
      Mutation: {
        addItem: (_: unknown, { name }: { name: string }) => {
          added++
          return { id: `new-${added}`, name }
        },
      },
    },
  }),
})

let server: ReturnType<typeof createServer>
let url: string
const clients: GraphQLApi[] = []
const client = (opts: Omit<Parameters<typeof createGraphQLClient>[0], 'url'> = {}) => {
  const c = createGraphQLClient({ url, retry: { baseDelayMs: 10, maxDelayMs: 100 }, ...opts })
  clients.push(c)
  return c
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString()
      requests.push({ auth: req.headers.authorization, query: body ? (JSON.parse(body) as { query: string }).query : '' })
      if (failNext > 0) {
        failNext--
        res.writeHead(503, { 'content-type': 'text/plain' })
        return res.end('busy')
      }
      // then to yoga, with the body read above
      void (async () => {
        const r = await yoga.fetch(`http://localhost${req.url}`, {
          method: req.method!,
          headers: req.headers as Record<string, string>,
          body: body || undefined,
        })
        res.writeHead(r.status, Object.fromEntries(r.headers))
        res.end(Buffer.from(await r.arrayBuffer()))
      })()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`
})
afterAll(async () => {
  for (const c of clients) await c.close()
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})
beforeEach(() => {
  requests = []
  failNext = 0
})

const ITEMS_QUERY = /* GraphQL */ `
  query Items($first: Int!, $after: String) {
    items(first: $first, after: $after) { edges { cursor node { id name } } pageInfo { endCursor hasNextPage } }
  }
`

describe('execute, query, mutation', () => {
  it('returns data, typed; sends auth; a DocumentNode works as well as a string', async () => {
    const c = client({ auth: bearerAuth('gql-token') })
    expect(await c.execute<{ hello: string }>('query Hi($n: String!) { hello(name: $n) }', { n: 'Ada' })).toEqual({ hello: 'hello Ada' })
    expect(await c.query<{ hello: string }>(parse('{ hello(name: "Bob") }'))).toEqual({ hello: 'hello Bob' })
    const { addItem } = await c.mutation<{ addItem: { id: string; name: string } }>(
      'mutation Add($name: String!) { addItem(name: $name) { id name } }',
      {
        name: 'thing',
      },
    )
    expect(addItem.name).toBe('thing')
    expect(requests.every((r) => r.auth === 'Bearer gql-token')).toBe(true)
  })

  it('GraphQL errors are a GraphQLRequestError with every error, the partial data and the status', async () => {
    const c = client()
    const err = await c.query('query Partly { hello(name: "x") boom }').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(GraphQLRequestError)
    const e = err as GraphQLRequestError
    expect(e.code).toBe('GRAPHQL_ERRORS')
    expect(e.errors[0]!.message).toBe('the resolver broke')
    expect(e.errors[0]!.path).toEqual(['boom'])
    expect(e.data).toEqual({ hello: 'hello x', boom: null })
    expect(e.operationName).toBe('Partly')
    expect(e.message).toBe('Partly failed: the resolver broke')

    // a validation error (yoga answers 400 with errors)
    const invalid = (await c.query('{ nope }').catch((x: unknown) => x)) as GraphQLRequestError
    expect(invalid).toBeInstanceOf(GraphQLRequestError)
    expect(invalid.status).toBe(400)
    expect(invalid.errors[0]!.message).toMatch(/Cannot query field "nope"/)
  })

  it('a query is retried on 503; a mutation is not, unless it carries an idempotency key', async () => {
    const c = client()
    failNext = 2
    expect(await c.query('{ hello(name: "again") }')).toEqual({ hello: 'hello again' })
    expect(requests).toHaveLength(3)

    requests = []
    failNext = 1
    const before = added
    const err = (await c.mutation('mutation { addItem(name: "once") { id } }').catch((e: unknown) => e)) as GraphQLRequestError
    expect(err).toBeInstanceOf(GraphQLRequestError)
    expect(err.status).toBe(503)
    expect(requests).toHaveLength(1)
    expect(added).toBe(before)

    requests = []
    failNext = 1
    await c.mutation('mutation { addItem(name: "keyed") { id } }', undefined, { idempotencyKey: 'add-keyed-1' })
    expect(requests).toHaveLength(2)
    expect(added).toBe(before + 1)
  })

  it('a 5xx past the retries is the HTTP status in the error; a refused connection is the HTTP client error', async () => {
    const c = client({ retry: { maxRetries: 1, baseDelayMs: 10, maxDelayMs: 100 } })
    failNext = 5
    const err = (await c.query('{ hello(name: "x") }').catch((e: unknown) => e)) as GraphQLRequestError
    expect(err.status).toBe(503)
    expect(requests).toHaveLength(2)

    const dead = createGraphQLClient({ url: 'http://127.0.0.1:1/graphql', retry: { maxRetries: 0 } })
    clients.push(dead)
    const down = (await dead.query('{ hello(name: "x") }').catch((e: unknown) => e)) as { code: string }
    expect(down.code).toBe('HTTP_NETWORK')
  })

  it('a 2xx that is not a GraphQL answer is a GraphQLRequestError', async () => {
    const { createServer: plain } = await import('node:http')
    const html = plain((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end('<html>a login page</html>')
    })
    await new Promise<void>((resolve) => html.listen(0, '127.0.0.1', resolve))
    try {
      const c = createGraphQLClient({ url: `http://127.0.0.1:${(html.address() as AddressInfo).port}/graphql` })
      clients.push(c)
      const err = (await c.query('query Q { hello(name: "x") }').catch((e: unknown) => e)) as GraphQLRequestError
      expect(err).toBeInstanceOf(GraphQLRequestError)
      expect(err.status).toBe(200)
      expect(err.message).toMatch(/^Q failed: not a GraphQL response/)
    } finally {
      html.closeAllConnections()
      await new Promise((resolve) => html.close(resolve))
    }
  })

  it("logs with the caller's context", async () => {
    const lines: Record<string, unknown>[] = []
    const logger = pino(
      { level: 'debug' },
      new Writable({
        write(chunk, _e, cb) {
          for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l))
          cb()
        },
      }),
    )
    await client()
      .withLogger(logger.child({ tenantId: 't-1', jobId: 'j-1' }))
      .query('{ hello(name: "x") }')
    expect(lines.find((l) => l.msg === 'http call')).toMatchObject({ tenantId: 't-1', jobId: 'j-1', status: 200, method: 'POST' })
  })
})

describe('Relay pagination', () => {
  it('fetchPagesRelay: 10 pages of 10 (the last one 5), in order, one request each, the cursor in `after`', async () => {
    const c = client()
    const all = await c.fetchPagesRelay<{ id: string; name: string }>(ITEMS_QUERY, { first: 10 }, { itemsPath: 'items.edges.node' })
    expect(all).toEqual(ITEMS)
    expect(requests).toHaveLength(10)
  })

  it('fetchPagesGenerator: a page at a time, fetched only as the loop asks', async () => {
    const c = client()
    const sizes: number[] = []
    for await (const page of c.fetchPagesGenerator<{ cursor: string; node: { id: string } }>(
      ITEMS_QUERY,
      { first: 10 },
      { itemsPath: 'items.edges' },
    )) {
      sizes.push(page.length)
      expect(requests).toHaveLength(sizes.length) // nothing fetched ahead
      expect(page[0]!.node.id).toBe(String((sizes.length - 1) * 10 + 1))
      if (sizes.length === 3) break
    }
    expect(sizes).toEqual([10, 10, 10])
    expect(requests).toHaveLength(3)
  })

  it('explicit paths, another cursor variable and a starting cursor', async () => {
    const c = client()
    const query = /* GraphQL */ `
      query Page($n: Int!, $from: String) { items(first: $n, after: $from) { nodes { id } pageInfo { endCursor hasNextPage } } }
    `
    const all = await c.fetchPagesRelay<{ id: string }>(
      query,
      { n: 30, from: cursorOf(49) },
      { itemsPath: 'items.nodes', cursorPath: 'items.pageInfo.endCursor', hasNextPath: 'items.pageInfo.hasNextPage', cursorVar: 'from' },
    )
    expect(all.map((i) => i.id)).toEqual(ITEMS.slice(50).map((i) => i.id))
    expect(requests).toHaveLength(2)
  })

  it('bad paths are GRAPHQL_BAD_PATH naming the path and what is there', async () => {
    const c = client()
    const fail = (p: Promise<unknown>) =>
      p.then(
        () => expect.unreachable(),
        (e: unknown) => e as GraphQLClientError,
      )
    let err = await fail(
      c.fetchPagesRelay(
        ITEMS_QUERY,
        { first: 10 },
        { itemsPath: 'items.edges.nod', cursorPath: 'items.pageInfo.endCursor', hasNextPath: 'items.pageInfo.hasNextPage' },
      ),
    )
    expect(err.code).toBe('GRAPHQL_BAD_PATH')
    expect(err.message).toBe('itemsPath "items.edges.nod": no field "nod" at items.edges[0] (found an object with cursor, node)')
    err = await fail(c.fetchPagesRelay(ITEMS_QUERY, { first: 10 }, { itemsPath: 'itemz.edges' }))
    expect(err.message).toBe('itemsPath "itemz.edges": no field "itemz" at data (found an object with items)')
    err = await fail(
      c.fetchPagesRelay(
        ITEMS_QUERY,
        { first: 10 },
        { itemsPath: 'items.pageInfo', cursorPath: 'items.pageInfo.endCursor', hasNextPath: 'items.pageInfo.hasNextPage' },
      ),
    )
    expect(err.message).toMatch(/itemsPath "items.pageInfo" is an object with endCursor, hasNextPage, not a list/)
    err = await fail(c.fetchPagesRelay(ITEMS_QUERY, { first: 10 }, { itemsPath: 'items.edges', hasNextPath: 'items.pageInfo.endCursor' }))
    expect(err.message).toMatch(/hasNextPath "items.pageInfo.endCursor" is string ".*", not a boolean/)
    err = await fail(c.fetchPagesRelay(ITEMS_QUERY, { first: 10 }, { itemsPath: 'items.edges', cursorPath: 'items.pageInfo.hasNextPage' }))
    expect(err.message).toMatch(/cursorPath "items.pageInfo.hasNextPage" is boolean true while there is a next page/)
  })

  it('a server that never ends is stopped: a repeated cursor, or maxPages', async () => {
    const c = client()
    const stuck = 'query S($after: String) { stuck(first: 5, after: $after) { nodes { id } pageInfo { endCursor hasNextPage } } }'
    const err = (await c.fetchPagesRelay(stuck, {}, { itemsPath: 'stuck.nodes' }).catch((e: unknown) => e)) as GraphQLClientError
    expect(err.code).toBe('GRAPHQL_PAGINATION')
    expect(err.message).toMatch(/cursor "same" twice/)
    const capped = (await c
      .fetchPagesRelay(ITEMS_QUERY, { first: 10 }, { itemsPath: 'items.edges', maxPages: 3 })
      .catch((e: unknown) => e)) as GraphQLClientError
    expect(capped.code).toBe('GRAPHQL_PAGINATION')
    expect(capped.message).toMatch(/maxPages \(3\)/)
  })

  it('bad options are GRAPHQL_INVALID_OPTIONS before any request', async () => {
    const c = client()
    const code = async (p: Promise<unknown>, message: RegExp) => {
      const err = (await p.catch((e: unknown) => e)) as GraphQLClientError
      expect(err.code).toBe('GRAPHQL_INVALID_OPTIONS')
      expect(err.message).toMatch(message)
    }
    await code(c.fetchPagesRelay(ITEMS_QUERY, {}, { itemsPath: '' }), /itemsPath must be a dotted path/)
    await code(c.fetchPagesRelay(ITEMS_QUERY, {}, { itemsPath: 'items..edges' }), /itemsPath must be a dotted path/)
    await code(c.fetchPagesRelay(ITEMS_QUERY, {}, { itemsPath: 'items.list' }), /cursorPath is required when itemsPath does not end in/)
    await code(c.fetchPagesRelay(ITEMS_QUERY, {}, { itemsPath: 'items.edges', cursorVar: '$after' }), /cursorVar must be a variable name/)
    await code(c.fetchPagesRelay(ITEMS_QUERY, {}, { itemsPath: 'items.edges', maxPages: 0 }), /maxPages must be a positive integer/)
    await code(c.fetchPagesRelay(ITEMS_QUERY, {}, undefined as never), /pagination options/)
    await code(c.query('mutation { addItem(name: "x") { id } }'), /query\(\) was given a mutation/)
    await code(c.mutation('{ hello(name: "x") }'), /mutation\(\) was given a query/)
    await code(c.execute(42 as never), /document must be/)
    await code(c.execute('{ hello(name: "x") }', [] as never), /variables must be an object/)
    expect(requests).toHaveLength(0)
    expect(() => createGraphQLClient({ url: 'nope' })).toThrow(/url "nope" is not a valid URL/)
    expect(() => createGraphQLClient({ url: 'ws://x/graphql' })).toThrow(/url must be http or https/)
    expect(() => createGraphQLClient({ url, timeoutMs: -5 })).toThrow(/timeoutMs must be a number/)
  })

  it('valueAt maps over lists', () => {
    expect(valueAt({ a: { b: [{ c: 1 }, { c: 2 }] } }, ['a', 'b', 'c'], 'p')).toEqual([1, 2])
    expect(() => valueAt({ a: { b: [{ c: 1 }, { d: 2 }] } }, ['a', 'b', 'c'], 'p')).toThrow(/no field "c" at a.b\[1\]/)
    expect(() => valueAt(null, ['a'], 'p')).toThrow(/no field "a" at data \(found null\)/)
  })
})
