import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { DecryptionError, decrypt, encrypt, keyIdOf } from '../src/core/lib/crypto.js'

const k1 = { id: 'k1', key: randomBytes(32) }
const k2 = { id: 'k2', key: randomBytes(32) }
const url = 'postgres://app:s3cret@db.internal:5432/tk_0192'

describe('crypto', () => {
  it('round-trips and never stores the plaintext', () => {
    const sealed = encrypt(url, [k1])
    expect(sealed).not.toContain('s3cret')
    expect(decrypt(sealed, [k1])).toBe(url)
    expect(encrypt(url, [k1])).not.toBe(sealed) // fresh IV each time
  })

  it('rotates: new values use the newest key, old values still open', () => {
    const old = encrypt(url, [k1])
    const ring = [k2, k1]
    const fresh = encrypt(url, ring)
    expect(keyIdOf(fresh)).toBe('k2')
    expect(decrypt(old, ring)).toBe(url)
    expect(decrypt(fresh, ring)).toBe(url)
  })

  it('fails closed on a wrong key, an unknown key id or tampering', () => {
    const sealed = encrypt(url, [k1])
    expect(() => decrypt(sealed, [{ id: 'k1', key: randomBytes(32) }])).toThrow(DecryptionError)
    expect(() => decrypt(sealed, [k2])).toThrow(/unknown encryption key id "k1"/)
    const parts = sealed.split('.')
    parts[4] = Buffer.from('tampered').toString('base64url')
    expect(() => decrypt(parts.join('.'), [k1])).toThrow(DecryptionError)
    expect(() => decrypt('garbage', [k1])).toThrow(/malformed/)
  })
})
