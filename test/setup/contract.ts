/**
 * Runs in every test file (vitest setupFiles): a test fails if any response sent during it broke the
 * documented contract (test/helpers/contract.ts), even one the test itself never looked at.
 */
import { afterEach } from 'vitest'
import { takeContractViolations } from '../helpers/contract.js'

afterEach(() => {
  const found = takeContractViolations()
  if (found.length) throw new Error(`Responses that break the OpenAPI contract (/docs/json):\n  ${found.join('\n  ')}`)
})
