/**
 * A cookie-keeping client over fastify.inject: what a browser would do. After signup/login it fetches
 * a CSRF token and sends it on writes, like a real front end.
 */
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'

export interface Client {
  cookies: Record<string, string>
  csrf: string | undefined
  request(opts: InjectOptions): Promise<LightMyRequestResponse>
  get(url: string, headers?: Record<string, string>): Promise<LightMyRequestResponse>
  post(url: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>
  put(url: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>
  patch(url: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>
  delete(url: string, headers?: Record<string, string>): Promise<LightMyRequestResponse>
  signup(email: string, password?: string, name?: string): Promise<LightMyRequestResponse>
  login(email: string, password?: string): Promise<LightMyRequestResponse>
}

export const PASSWORD = 'correct horse battery staple'

let ipCounter = 1
/** Each client gets its own remote address so per-IP rate limits don't couple tests. */
const nextIp = () => `10.${(ipCounter >> 16) & 255}.${(ipCounter >> 8) & 255}.${ipCounter++ & 255}`

export function createClient(app: FastifyInstance, ip = nextIp()): Client {
  const client: Client = {
    cookies: {},
    csrf: undefined,
    async request(opts) {
      const headers: Record<string, string> = { ...(opts.headers as Record<string, string>) }
      const cookie = Object.entries(client.cookies)
        .map(([k, v]) => `${k}=${v}`)
        .join('; ')
      if (cookie) headers.cookie = cookie
      if (client.csrf && opts.method && opts.method !== 'GET' && !('x-csrf-token' in headers)) headers['x-csrf-token'] = client.csrf
      const res = await app.inject({ remoteAddress: ip, ...opts, headers })
      for (const c of res.cookies as { name: string; value: string; maxAge?: number; expires?: Date }[]) {
        if (c.value === '' || c.maxAge === 0 || (c.expires && c.expires.getTime() <= Date.now())) delete client.cookies[c.name]
        else client.cookies[c.name] = c.value
      }
      return res
    },
    get: (url, headers) => client.request({ method: 'GET', url, headers }),
    post: (url, body, headers) => client.request({ method: 'POST', url, payload: body as InjectOptions['payload'], headers }),
    put: (url, body, headers) => client.request({ method: 'PUT', url, payload: body as InjectOptions['payload'], headers }),
    patch: (url, body, headers) => client.request({ method: 'PATCH', url, payload: body as InjectOptions['payload'], headers }),
    delete: (url, headers) => client.request({ method: 'DELETE', url, headers }),
    async signup(email, password = PASSWORD, name) {
      const res = await client.post('/auth/signup', { email, password, ...(name ? { name } : {}) })
      if (res.statusCode === 201) await refreshCsrf()
      return res
    },
    async login(email, password = PASSWORD) {
      const res = await client.post('/auth/login', { email, password })
      if (res.statusCode === 200) await refreshCsrf()
      return res
    },
  }
  async function refreshCsrf() {
    const res = await client.get('/auth/csrf')
    client.csrf = res.json().token
  }
  return client
}
