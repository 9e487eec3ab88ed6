/** autocannon ships no types: the slice of its programmatic API the benchmarks use, typed here. */
import { createRequire } from 'node:module'

export interface AutocannonRequest {
  method?: string
  path?: string
  setupRequest?: (req: AutocannonRequest) => AutocannonRequest
}

export interface AutocannonOptions {
  url: string
  connections?: number
  duration?: number
  pipelining?: number
  headers?: Record<string, string>
  requests?: AutocannonRequest[]
}

interface Histogram {
  average: number
  p50: number
  p99: number
  max: number
}

export interface AutocannonResult {
  requests: Histogram & { total: number }
  latency: Histogram
  errors: number
  timeouts: number
  non2xx: number
  '2xx': number
}

const autocannon = createRequire(import.meta.url)('autocannon') as (opts: AutocannonOptions) => Promise<AutocannonResult>

export const runAutocannon = (opts: AutocannonOptions) => autocannon(opts)
