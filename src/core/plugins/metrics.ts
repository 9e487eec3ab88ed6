/**
 * Prometheus metrics on GET /metrics: process defaults, HTTP latency by route, requests per tenant (the
 * METRICS_TOP_TENANTS busiest by name, the rest as tenant="other", so label cardinality stays bounded
 * however many tenants there are), gauges other plugins register (pool manager) through
 * `fastify.metrics.registry`, and registries included whole (the services': provisioning, jobs, queues;
 * features' own counters).
 * With METRICS_TOKEN set
 * the scraper must send `Authorization: Bearer <token>`; in production without a token the endpoint
 * is off (route latencies and pool gauges are not for the public).
 */
import { timingSafeEqual } from 'node:crypto'
import { createRequire } from 'node:module'
import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { routeConfig } from '../lib/route-config.js'
import type { AppOptions } from '../config.js'
import { unauthorized } from '../lib/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: {
      registry: Registry
      /** Serve another registry's metrics on /metrics too (each metric name once across them). */
      include(registry: Registry): void
    }
  }
}

type Observer = { observe(value: number): void }

const { hashObject } = createRequire(import.meta.url)('prom-client/lib/util.js') as {
  hashObject(labels: object, sortedLabelNames: string[]): string
}

/** What a prom-client Histogram keeps per labelled series (prom-client/lib/histogram.js; pinned with prom-client). */
interface HistogramInternals {
  hashMap: Record<string, { sum: number; count: number; bucketValues: Record<number, number> } | undefined>
  upperBounds: number[]
  sortedLabelNames: string[]
}

/**
 * One labelled series of a histogram, observed the way prom-client does (sum, count, the first bucket whose
 * bound holds the value) but without its per-call work: `labels(…).observe(v)` still validates and hashes the
 * label object on every call (~3 µs of an API read in the profile). The series' entry is looked up by its
 * hash on each call, so a reset (which replaces the map) is followed: prom-client's own observe makes the
 * entry again. test/observability/histogram-series.test.ts compares both ways on the same values.
 */
export function seriesObserver(histogram: Histogram<string>, labels: Record<string, string | number>): Observer {
  const h = histogram as unknown as HistogramInternals
  const hash = hashObject(labels, h.sortedLabelNames)
  const bounds = h.upperBounds
  return {
    observe(value) {
      const series = h.hashMap[hash]
      if (series === undefined || !Number.isFinite(value)) return histogram.observe(labels, value)
      series.sum += value
      series.count += 1
      for (let i = 0; i < bounds.length; i++) {
        if (value <= bounds[i]!) {
          series.bucketValues[bounds[i]!]! += 1
          return
        }
      }
    },
  }
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    const registry = new Registry()
    collectDefaultMetrics({ register: registry })
    const latency = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency by route and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    })
    const included: Registry[] = []
    fastify.decorate('metrics', { registry, include: (r: Registry) => void included.push(r) })
    const countTenant = tenantRequestCounter(registry, config.metricsTopTenants)
    // The labelled series of each route, method and status, found once (see seriesObserver). Keyed by the
    // route's config object, one per route.
    const series = new WeakMap<object, Map<string, Observer>>()
    const seriesOf = (req: FastifyRequest, status: number): Observer => {
      const route = routeConfig(req)
      let byStatus = series.get(route)
      if (!byStatus) {
        byStatus = new Map()
        series.set(route, byStatus)
      }
      const key = `${req.method} ${status}`
      let observer = byStatus.get(key)
      if (!observer) {
        // The url is the pattern (/api/projects/:id), so label cardinality stays bounded.
        observer = seriesObserver(latency, { method: req.method, route: route.url ?? 'unmatched', status })
        byStatus.set(key, observer)
      }
      return observer
    }
    fastify.addHook('onResponse', (req, reply, done) => {
      seriesOf(req, reply.statusCode).observe(reply.elapsedTime / 1000)
      if (req.tenant) countTenant(req.tenant.id, req.tenant.slug)
      done()
    })
    const token = config.metricsToken
    if (!token && config.env === 'production') return
    const expected = token ? Buffer.from(`Bearer ${token}`) : undefined
    fastify.get('/metrics', { schema: { hide: true }, config: { rateLimit: false, underPressure: false } }, async (req, reply) => {
      const given = Buffer.from(req.headers.authorization ?? '')
      if (expected && (given.length !== expected.length || !timingSafeEqual(given, expected))) throw unauthorized('METRICS_TOKEN_REQUIRED', 'Send the metrics token as a Bearer token')
      reply.type(registry.contentType)
      return included.length === 0 ? registry.metrics() : Registry.merge([registry, ...included]).metrics()
    })
  },
  { name: 'metrics' },
)

/** Tenants counted one by one; requests of tenants beyond this many (a flood of new ones) count as "other" straight away. */
const MAX_TRACKED_TENANTS = 10_000

/**
 * Requests per tenant (those a tenant route resolved). Counted in a map; at scrape time the `topN` busiest
 * since start are exported under their id and slug, everyone else summed as tenant="other". A tenant that
 * climbs into the top N takes its count out of "other" (sum over the series is exact; "other" alone is not
 * monotonic when the ranking changes).
 */
function tenantRequestCounter(registry: Registry, topN: number): (tenantId: string, slug: string) => void {
  const counts = new Map<string, { slug: string; n: number }>()
  let untracked = 0
  new Counter({
    name: 'tenant_http_requests_total',
    help: `Requests per tenant: the ${topN} busiest by id and slug, the rest as tenant="other"`,
    labelNames: ['tenant', 'slug'],
    registers: [registry],
    collect() {
      this.reset()
      const ranked = [...counts.entries()].sort((a, b) => b[1].n - a[1].n)
      let other = untracked
      for (const [i, [tenant, { slug, n }]] of ranked.entries()) {
        if (i < topN) this.inc({ tenant, slug }, n)
        else other += n
      }
      if (other > 0) this.inc({ tenant: 'other', slug: 'other' }, other)
    },
  })
  return (tenantId, slug) => {
    const entry = counts.get(tenantId)
    if (entry) {
      entry.n++
      entry.slug = slug
    } else if (counts.size < MAX_TRACKED_TENANTS) counts.set(tenantId, { slug, n: 1 })
    else untracked++
  }
}
