/**
 * The GraphQL client, end to end on this machine: `npx tsx examples/graphql-client.ts`.
 * A local graphql-yoga server (a devDependency) serves 95 orders as a Relay connection; the client reads
 * them 10 per page, streamed and accumulated, runs a mutation, and shows a GraphQL error as a typed error.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createSchema, createYoga } from 'graphql-yoga'
import { createGraphQLClient, GraphQLRequestError } from '../src/core/integrations/graphql-client.js'
import { bearerAuth } from '../src/core/integrations/http-auth.js'

const orders = Array.from({ length: 95 }, (_, i) => ({ id: String(i + 1), total: (i + 1) * 100 }))
const yoga = createYoga({
  logging: false,
  maskedErrors: false,
  schema: createSchema({
    typeDefs: `
      type Order { id: ID!, total: Int! }
      type OrderEdge { cursor: String!, node: Order! }
      type PageInfo { endCursor: String, hasNextPage: Boolean! }
      type OrderConnection { edges: [OrderEdge!]!, pageInfo: PageInfo! }
      type Query { orders(first: Int!, after: String): OrderConnection!, secret: String }
      type Mutation { refund(id: ID!): Order! }
    `,
    resolvers: {
      Query: {
        orders: (_: unknown, { first, after }: { first: number; after?: string }) => {
          const start = after ? Number(after) + 1 : 0
          const edges = orders.slice(start, start + first).map((node, i) => ({ cursor: String(start + i), node }))
          return { edges, pageInfo: { endCursor: edges.at(-1)?.cursor ?? null, hasNextPage: start + first < orders.length } }
        },
        secret: () => {
          throw new Error('not allowed')
        },
      },
      Mutation: { refund: (_: unknown, { id }: { id: string }) => ({ id, total: 0 }) },
    },
  }),
})
const server = createServer(yoga)
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))

const shop = createGraphQLClient({
  url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`,
  auth: bearerAuth('demo-token'),
})
const ORDERS = `query Orders($first: Int!, $after: String) {
  orders(first: $first, after: $after) { edges { node { id total } } pageInfo { endCursor hasNextPage } }
}`

let pages = 0
for await (const page of shop.fetchPagesGenerator<{ id: string; total: number }>(
  ORDERS,
  { first: 10 },
  { itemsPath: 'orders.edges.node' },
)) {
  pages++
  console.log(`page ${pages}: ${page.length} orders, first id ${page[0]!.id}`)
}
const all = await shop.fetchPagesRelay<{ id: string; total: number }>(ORDERS, { first: 10 }, { itemsPath: 'orders.edges.node' })
console.log(`accumulated: ${all.length} orders`)
const { refund } = await shop.mutation<{ refund: { id: string; total: number } }>('mutation R($id: ID!) { refund(id: $id) { id total } }', {
  id: '7',
})
console.log('refund:', refund)
try {
  await shop.query('query Secret { secret }')
} catch (err) {
  if (err instanceof GraphQLRequestError) console.log('GraphQLRequestError:', err.code, err.errors[0]!.message, err.data)
}
await shop.close()
server.close()
