/**
 * Single-use tokens sent by email (invitations, and the like): 32 random bytes, base64url, behind a
 * short prefix that says what they are. Only the SHA-256 is stored: the secret has 256 random bits,
 * so a fast hash is enough and a database leak yields no usable token.
 */
import { createHash, randomBytes } from 'node:crypto'

export const hashToken = (token: string): string => createHash('sha256').update(token).digest('hex')

/** 32 bytes of base64url are 43 characters. */
const SECRET = /^[A-Za-z0-9_-]{43}$/

export function generateToken(prefix: string): { token: string; hash: string } {
  const token = `${prefix}_${randomBytes(32).toString('base64url')}`
  return { token, hash: hashToken(token) }
}

/** Does `token` have the shape generateToken(prefix) gives? Lets callers refuse garbage before any lookup. */
export const isTokenShaped = (token: string, prefix: string): boolean =>
  token.startsWith(`${prefix}_`) && SECRET.test(token.slice(prefix.length + 1))
