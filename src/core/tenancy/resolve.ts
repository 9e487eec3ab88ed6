/**
 * Which tenant a request is for. A chain of resolvers, first match wins (the order is configurable
 * per app): X-Tenant-ID header (slug or id) → /t/:tenant/… path → subdomain of TENANT_DOMAIN_SUFFIX
 * → the session's active tenant. A resolver only names a tenant; whether the caller may enter it is
 * decided afterwards, from the database, by the tenancy guard.
 */
import type { FastifyRequest } from 'fastify'
import { badRequest } from '../lib/errors.js'

export type TenantResolver = (req: FastifyRequest) => string | undefined

export interface ResolverOptions {
  domainSuffix?: string | undefined
}

// A slug or a tenant id (a UUID is also a string of this alphabet, 36 long).
const REF = /^[a-z0-9-]{1,63}$/i

/** A malformed reference is bad input (400), not an unknown tenant. */
function checked(ref: string | undefined, source: string): string | undefined {
  if (ref === undefined || ref === '') return undefined
  if (!REF.test(ref)) throw badRequest('INVALID_TENANT_REF', `Malformed tenant reference in ${source}`)
  return ref.toLowerCase()
}

export const fromHeader: TenantResolver = (req) => {
  const value = req.headers['x-tenant-id']
  return checked(Array.isArray(value) ? value[0] : value, 'X-Tenant-ID header')
}

export const fromPath: TenantResolver = (req) => checked((req.params as { tenant?: string } | undefined)?.tenant, 'path')

/** A fully qualified name may end in a dot (`acme.app.test.`): the same host. */
const withoutRootDot = (name: string) => (name.endsWith('.') ? name.slice(0, -1) : name)

/**
 * `acme.app.example.com` → `acme`. req.host honours X-Forwarded-Host only when trustProxy is on.
 * A deeper name (`x.acme.app.example.com`) names no tenant: 400, never a fall back to the session's.
 */
export const fromSubdomain =
  (suffix: string | undefined): TenantResolver =>
  (req) => {
    if (!suffix) return undefined
    // An HTTP/1.0 request may carry no Host header at all.
    const host = withoutRootDot((req.host ?? '').replace(/:\d+$/, '').toLowerCase())
    const tail = `.${withoutRootDot(suffix.toLowerCase())}`
    if (!host.endsWith(tail)) return undefined
    const sub = host.slice(0, -tail.length)
    if (sub.includes('.')) throw badRequest('INVALID_TENANT_REF', 'Malformed tenant reference in subdomain (nested subdomain)')
    return checked(sub, 'subdomain')
  }

export const fromSession: TenantResolver = (req) => req.session?.activeTenantId

export function defaultResolvers(opts: ResolverOptions): TenantResolver[] {
  return [fromHeader, fromPath, fromSubdomain(opts.domainSuffix), fromSession]
}

export function resolveTenantRef(req: FastifyRequest, resolvers: TenantResolver[]): string | undefined {
  for (const resolve of resolvers) {
    const ref = resolve(req)
    if (ref) return ref
  }
  return undefined
}

/**
 * Every tenant the request names explicitly (header, path, subdomain: all resolvers but the session's
 * fallback), without repeats; falls back to the session's active tenant only when none does. More than
 * one distinct reference must name the same tenant (the guard checks, by catalog), else 400 TENANT_CONFLICT.
 */
export function resolveTenantRefs(req: FastifyRequest, resolvers: TenantResolver[]): string[] {
  const named = new Set<string>()
  for (const resolve of resolvers) {
    if (resolve === fromSession) continue
    const ref = resolve(req)
    if (ref) named.add(ref)
  }
  if (named.size > 0 || !resolvers.includes(fromSession)) return [...named]
  const active = fromSession(req)
  return active ? [active] : []
}
