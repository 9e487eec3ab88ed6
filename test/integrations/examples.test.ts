/**
 * The README's runnable examples (examples/*.ts) run as documented (`npx tsx examples/<name>.ts`), so the
 * sections showing them can't rot: each must exit 0 and print what the README says it prints.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const example = (name: string) =>
  run(process.execPath, ['--import', 'tsx', `examples/${name}.ts`], { cwd: new URL('../..', import.meta.url).pathname, timeout: 60_000 })

describe('examples', () => {
  it('http-client: a token, two retries (503, then 429 with Retry-After), the data, and a 404 as HttpError', async () => {
    const { stdout } = await example('http-client')
    expect(stdout).toContain("contacts: [ { id: 1, name: 'Ada' } ]")
    expect(stdout).toContain("HttpError: HTTP_STATUS 404 { error: 'no such contact' }")
    const lines = stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l))
    expect(lines.filter((l) => l.msg === 'http call: retrying').map((l) => l.status)).toEqual([503, 429])
    expect(lines.every((l) => l.tenantId === 'the-tenant-id')).toBe(true)
  })

  it('graphql-client: 10 pages streamed and accumulated, a mutation, a GraphQL error as GraphQLRequestError', async () => {
    const { stdout } = await example('graphql-client')
    expect(stdout.match(/^page \d+:/gm)).toHaveLength(10)
    expect(stdout).toContain('page 10: 5 orders, first id 91')
    expect(stdout).toContain('accumulated: 95 orders')
    expect(stdout).toContain("refund: { id: '7', total: 0 }")
    expect(stdout).toContain('GraphQLRequestError: GRAPHQL_ERRORS not allowed { secret: null }')
  })

  it('workflow: results passed on; a failing step retried, then the completed steps compensated in reverse', async () => {
    const { stdout } = await example('workflow')
    expect(stdout).toContain(
      'results: {"reserve":{"reservation":"R-1"},"charge":{"charge":"C-4200","for":"R-1"},"ship":{"tracking":"T-1","after":["reserve","charge"]}}',
    )
    const order2 = stdout.slice(stdout.indexOf('order 2:'))
    expect(order2.match(/ship attempt \d/g)).toEqual(['ship attempt 1', 'ship attempt 2', 'ship attempt 3'])
    expect(order2.indexOf('refund C-990')).toBeLessThan(order2.indexOf('release R-2'))
    expect(stdout).toContain('WorkflowError: workflow step "ship" failed: carrier down; compensated charge, reserve')
  })
})
