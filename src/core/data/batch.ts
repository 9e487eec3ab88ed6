/**
 * The seed's batch_execute: work through a large list (or a stream) in batches, each batch in its own
 * transaction, so memory stays flat, a failure loses at most the batch in flight (the ones before are
 * committed), and a progress callback (a job's updateProgress, a log line) sees each commit.
 */
import { badRequest } from '../lib/errors.js'
import type { AnyDb } from './table-helpers.js'

export interface BatchProgress {
  /** Items committed so far. */
  done: number
  batches: number
  /** Known for arrays; undefined for streams. */
  total: number | undefined
}

export interface BatchOptions {
  batchSize?: number
  onProgress?: (progress: BatchProgress) => void | Promise<void>
  signal?: AbortSignal
}

export async function batchExecute<D extends AnyDb, T>(
  db: D,
  items: Iterable<T> | AsyncIterable<T>,
  work: (batch: T[], tx: Parameters<Parameters<D['transaction']>[0]>[0]) => Promise<unknown>,
  opts: BatchOptions = {},
): Promise<BatchProgress> {
  const batchSize = opts.batchSize ?? 1000
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw badRequest('INVALID_ROWS', 'batchSize must be a positive integer')
  const progress: BatchProgress = { done: 0, batches: 0, total: Array.isArray(items) ? items.length : undefined }
  const flush = async (batch: T[]) => {
    opts.signal?.throwIfAborted()
    await db.transaction((tx) => work(batch, tx as never) as Promise<unknown>)
    progress.done += batch.length
    progress.batches++
    await opts.onProgress?.({ ...progress })
  }
  let batch: T[] = []
  for await (const item of items) {
    batch.push(item)
    if (batch.length >= batchSize) {
      await flush(batch)
      batch = []
    }
  }
  if (batch.length > 0) await flush(batch)
  return progress
}
