/**
 * A real OpenID provider for tests: oauth2-mock-server on 127.0.0.1 with an RS256 key. It serves
 * discovery, JWKS, /authorize (PKCE), /token (ID token signed with the key) and /userinfo over HTTP.
 * `setClaims` decides what the next ID tokens say (sub, email, email_verified, name, or anything
 * else, e.g. a wrong `aud`); `setUserinfo` the same for /userinfo.
 */
import { type MutableResponse, type MutableToken, OAuth2Server } from 'oauth2-mock-server'

export interface MockOidc {
  /** The issuer URL (http://localhost:PORT): OAUTH_ISSUER_URL. */
  issuerUrl: string
  server: OAuth2Server
  setClaims(claims: Record<string, unknown>): void
  setUserinfo(claims: Record<string, unknown>): void
  /**
   * Play the browser at the provider: GET the authorize URL our /login redirected to, and return the
   * URL the provider redirects back to (our callback with code and state).
   */
  authorize(authorizeUrl: string): Promise<URL>
  close(): Promise<void>
}

export async function startMockOidc(): Promise<MockOidc> {
  const server = new OAuth2Server()
  await server.issuer.keys.generate('RS256')
  await server.start(0, '127.0.0.1')
  let claims: Record<string, unknown> = {}
  let userinfo: Record<string, unknown> = {}

  // Both tokens of a code exchange go through here; the access token carries `scope`, the ID token doesn't.
  server.service.on('beforeTokenSigning', (token: MutableToken) => {
    if (!('scope' in token.payload)) Object.assign(token.payload, claims)
  })
  server.service.on('beforeUserinfo', (res: MutableResponse) => {
    Object.assign(res.body as Record<string, unknown>, userinfo)
  })

  return {
    issuerUrl: server.issuer.url!,
    server,
    setClaims: (c) => {
      claims = { ...c }
    },
    setUserinfo: (c) => {
      userinfo = { ...c }
    },
    async authorize(authorizeUrl) {
      const res = await fetch(authorizeUrl, { redirect: 'manual' })
      const location = res.headers.get('location')
      if (res.status !== 302 || !location) throw new Error(`mock /authorize answered ${res.status}: ${await res.text()}`)
      return new URL(location)
    },
    close: async () => {
      if (server.listening) await server.stop()
    },
  }
}
