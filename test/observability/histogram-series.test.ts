/**
 * seriesObserver (src/core/plugins/metrics.ts) writes into prom-client's own per-series entry: the same
 * values observed through it and through prom-client's observe must scrape the same, including values on a
 * bucket bound, above every bound, and after a reset.
 */
import { Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { seriesObserver } from '../../src/core/plugins/metrics.js'

const histogram = (name: string) =>
  new Histogram({ name, help: name, labelNames: ['method', 'route', 'status'], buckets: [0.001, 0.01, 0.1, 1], registers: [new Registry()] })
const labels = { method: 'GET', route: '/api/projects/:id', status: 200 }
const values = [0.0005, 0.001, 0.002, 0.01, 0.05, 0.1, 0.5, 1, 7, 0]

/** The scrape of a histogram without its name (so two histograms compare). */
const scrape = async (h: Histogram<string>) => (await h.get()).values.map(({ labels, value, metricName }) => ({ labels, value, suffix: metricName?.split('_').at(-1) }))

describe('seriesObserver', () => {
  it('scrapes exactly as prom-client observe(labels, v) on the same values', async () => {
    const ours = histogram('ours')
    const theirs = histogram('theirs')
    const observer = seriesObserver(ours, labels)
    for (const v of values) {
      observer.observe(v)
      theirs.observe(labels, v)
    }
    expect(await scrape(ours)).toEqual(await scrape(theirs))
    const count = (await scrape(ours)).find((s) => s.suffix === 'count')
    expect(count?.value).toBe(values.length)
  })

  it('follows a reset: observations after it are counted, none from before', async () => {
    const ours = histogram('ours_reset')
    const observer = seriesObserver(ours, labels)
    observer.observe(0.5)
    ours.reset()
    observer.observe(0.002)
    observer.observe(0.003)
    const series = await scrape(ours)
    expect(series.find((s) => s.suffix === 'count')?.value).toBe(2)
    expect(series.find((s) => s.suffix === 'sum')?.value).toBeCloseTo(0.005)
    expect(series.find((s) => s.suffix === 'bucket' && s.labels.le === 0.01)?.value).toBe(2)
  })

  it('rejects a non-finite value as prom-client does', () => {
    const observer = seriesObserver(histogram('ours_nan'), labels)
    observer.observe(0.1)
    expect(() => observer.observe(Number.NaN)).toThrow(TypeError)
  })
})
