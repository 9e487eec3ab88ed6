/**
 * The outbound HTTP client, end to end on this machine: `npx tsx examples/http-client.ts`.
 * A local peer stands in for a third-party API: an OAuth2 token endpoint, and an API that answers 503 once,
 * then 429 with Retry-After: 1, then the data. The client fetches a token, retries twice, and logs each step.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import { oauth2ClientCredentials } from '../src/core/integrations/http-auth.js'
import { createHttpClient } from '../src/core/integrations/http-client.js'
import { HttpError } from '../src/core/integrations/http-errors.js'

let calls = 0
const peer = createServer((req, res) => {
  const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers })
    res.end(JSON.stringify(body))
  }
  if (req.url === '/oauth/token') return json(200, { access_token: 'demo-token', token_type: 'Bearer', expires_in: 3600 })
  if (req.headers.authorization !== 'Bearer demo-token') return json(401, { error: 'invalid_token' })
  if (req.url === '/v1/missing') return json(404, { error: 'no such contact' })
  calls++
  if (calls === 1) return json(503, { error: 'busy' })
  if (calls === 2) return json(429, { error: 'slow down' }, { 'retry-after': '1' })
  json(200, { contacts: [{ id: 1, name: 'Ada' }] })
})
await new Promise<void>((resolve) => peer.listen(0, '127.0.0.1', resolve))
const origin = `http://127.0.0.1:${(peer.address() as AddressInfo).port}`

// Made once per peer (at boot, in a feature's services); used with each request's or job's logger.
const crm = createHttpClient({
  name: 'crm',
  baseUrl: `${origin}/v1`,
  auth: oauth2ClientCredentials({ tokenUrl: `${origin}/oauth/token`, clientId: 'demo', clientSecret: 'demo-secret' }),
  timeoutMs: 5_000,
  totalTimeoutMs: 20_000,
  retry: { maxRetries: 3, baseDelayMs: 200, maxDelayMs: 5_000 },
})
const log = pino({ level: 'debug' }).child({ tenantId: 'the-tenant-id', jobId: 'the-job-id' }) // in a route: req.log; in a job: ctx.logger

const { contacts } = await crm.withLogger(log).getJson<{ contacts: { id: number; name: string }[] }>('/contacts', { query: { limit: 10 } })
console.log('contacts:', contacts)
try {
  await crm.withLogger(log).getJson('/missing')
} catch (err) {
  if (err instanceof HttpError) console.log('HttpError:', err.code, err.status, err.body)
}
await crm.close()
peer.close()
