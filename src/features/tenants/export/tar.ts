/**
 * A .tar.gz of a few files, written with node's zlib and a minimal ustar writer (no dependency): each file is
 * a 512-byte header, its bytes, zero padding to 512; two zero blocks end the archive. Files are streamed from
 * disk, so a large database dump never sits in memory. Any `tar -xzf` reads the result.
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'

const BLOCK = 512
/** ustar's size field holds 11 octal digits. */
const MAX_SIZE = 8 ** 11 - 1

function header(name: string, size: number, mtime: Date): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar: file name too long: ${name}`)
  if (size > MAX_SIZE) throw new Error(`tar: ${name} is larger than 8 GiB`)
  const h = Buffer.alloc(BLOCK)
  const put = (offset: number, length: number, value: string) => h.write(value, offset, length, 'ascii')
  const octal = (value: number, length: number) => `${value.toString(8).padStart(length - 1, '0')}\0`
  h.write(name, 0, 100, 'utf8')
  put(100, 8, octal(0o600, 8))
  put(108, 8, octal(0, 8))
  put(116, 8, octal(0, 8))
  put(124, 12, octal(size, 12))
  put(136, 12, octal(Math.floor(mtime.getTime() / 1000), 12))
  put(148, 8, '        ') // the checksum counts its own field as spaces
  put(156, 1, '0')
  put(257, 6, 'ustar\0')
  put(263, 2, '00')
  let sum = 0
  for (const byte of h) sum += byte
  put(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `)
  return h
}

async function* tarStream(files: readonly { name: string; path: string }[]) {
  for (const file of files) {
    const { size, mtime } = await stat(file.path)
    yield header(file.name, size, mtime)
    let written = 0
    for await (const chunk of createReadStream(file.path)) {
      written += (chunk as Buffer).length
      yield chunk as Buffer
    }
    if (written !== size) throw new Error(`tar: ${file.name} changed while being archived`)
    const pad = (BLOCK - (size % BLOCK)) % BLOCK
    if (pad) yield Buffer.alloc(pad)
  }
  yield Buffer.alloc(BLOCK * 2)
}

/** Write `files` (name in the archive, path on disk) as a gzip'd tar at `target`. */
export async function writeTarGz(target: string, files: readonly { name: string; path: string }[]): Promise<void> {
  await pipeline(Readable.from(tarStream(files)), createGzip(), createWriteStream(target, { mode: 0o600 }))
}
