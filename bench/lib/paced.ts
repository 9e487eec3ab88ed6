/**
 * A fixed offered load, evenly paced: one request every 1/rate s over up to `connections` keep-alive
 * sockets, each answer timed from when it was due (so a server that falls behind is charged for the wait,
 * no coordinated omission). autocannon's `overallRate` sends each connection's quota at the start of every
 * second and then idles: 50 connections fire their requests together, and the p99 measures how long the
 * burst takes to drain, which is the req/s ratio again rather than the latency of a request.
 */
import { Agent, request } from 'node:http'

export interface PacedResult {
  /** Answers per second. */
  rate: number
  /** Milliseconds, from when each request was due to its last byte. */
  p50: number
  p99: number
  p999: number
  non2xx: number
  errors: number
}

export async function runPaced(opts: {
  url: string
  headers?: Record<string, string>
  rate: number
  durationS: number
  connections: number
}): Promise<PacedResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: opts.connections })
  const url = new URL(opts.url)
  const total = Math.round(opts.rate * opts.durationS)
  const intervalNs = 1e9 / opts.rate
  const latencies = new Float64Array(total)
  let non2xx = 0
  let errors = 0
  let done = 0
  const start = process.hrtime.bigint()
  const one = (i: number, due: bigint) =>
    new Promise<void>((resolve) => {
      const req = request({ agent, host: url.hostname, port: url.port, path: url.pathname, headers: opts.headers }, (res) => {
        if ((res.statusCode ?? 0) >= 300) non2xx++
        res.resume()
        res.once('end', () => {
          latencies[i] = Number(process.hrtime.bigint() - due) / 1e6
          resolve()
        })
      })
      req.once('error', () => {
        errors++
        latencies[i] = Number.NaN
        resolve()
      })
      req.end()
    })
  const pending: Promise<void>[] = []
  let sent = 0
  await new Promise<void>((resolve) => {
    const tick = () => {
      // Everything due by now, each stamped with its own due time.
      const elapsed = Number(process.hrtime.bigint() - start)
      while (sent < total && sent * intervalNs <= elapsed) {
        const due = start + BigInt(Math.round(sent * intervalNs))
        pending.push(one(sent++, due).then(() => void done++))
      }
      // A 1 ms timer, not a spin: the load generator shares the machine with the servers.
      if (sent < total) setTimeout(tick, 1)
      else resolve()
    }
    tick()
  })
  await Promise.all(pending)
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  agent.destroy()
  const sorted = Array.from(latencies).filter((x) => !Number.isNaN(x)).sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN
  return { rate: done / seconds, p50: at(0.5), p99: at(0.99), p999: at(0.999), non2xx, errors }
}
