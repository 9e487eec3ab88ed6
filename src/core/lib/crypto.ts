/**
 * AES-256-GCM for secrets at rest (tenant database URLs). The ciphertext names the key that sealed it
 * (`v1.<keyId>.<iv>.<tag>.<data>`), so keys rotate by putting a new key first in ENCRYPTION_KEYS:
 * new values use it, old values still open with the older key until re-encrypted.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

export interface KeyRing {
  id: string
  key: Buffer
}

export class DecryptionError extends Error {
  override name = 'DecryptionError'
}

export function encrypt(plaintext: string, keys: readonly KeyRing[]): string {
  const current = keys[0]
  if (!current) throw new Error('no encryption key configured')
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', current.key, iv)
  const data = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
  const tag = cipher.getAuthTag()
  return ['v1', current.id, iv.toString('base64url'), tag.toString('base64url'), data.toString('base64url')].join('.')
}

export function decrypt(sealed: string, keys: readonly KeyRing[]): string {
  const [version, keyId, iv, tag, data] = sealed.split('.')
  if (version !== 'v1' || !keyId || !iv || !tag || data === undefined) throw new DecryptionError('malformed ciphertext')
  const ring = keys.find((k) => k.id === keyId)
  if (!ring) throw new DecryptionError(`unknown encryption key id "${keyId}"`)
  try {
    const decipher = createDecipheriv('aes-256-gcm', ring.key, Buffer.from(iv, 'base64url'))
    decipher.setAuthTag(Buffer.from(tag, 'base64url'))
    return Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()]).toString('utf8')
  } catch {
    throw new DecryptionError(`ciphertext does not open with key "${keyId}" (wrong key or tampered data)`)
  }
}

/** The id of the key a value was sealed with: lets a rotation job find values still on an old key. */
export function keyIdOf(sealed: string): string | undefined {
  return sealed.split('.')[1]
}
