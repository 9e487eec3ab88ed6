/**
 * The in-process Workflow, runnable anywhere: `npx tsx examples/workflow.ts`.
 * The same steps (name, run, compensate, maxRetries, backoff, timeoutMs) run as a BullMQ flow when given to
 * tenantWorkflow()/systemWorkflow() in a feature's jobs (README "Workflows"; test/jobs/workflows.test.ts).
 */
import { Workflow, WorkflowError, type WorkflowStep } from '../src/core/jobs/workflows.js'

interface Order {
  id: string
  amount: number
  carrierUp: boolean
}

const steps: WorkflowStep<Order>[] = [
  {
    name: 'reserve',
    run: ({ payload }) => ({ reservation: `R-${payload.id}` }),
    compensate: ({ result }) => console.log('  compensate reserve: release', (result as { reservation: string }).reservation),
  },
  {
    name: 'charge',
    run: ({ payload, previous }) => ({ charge: `C-${payload.amount}`, for: (previous as { reservation: string }).reservation }),
    compensate: ({ result, failedStep, error }) =>
      console.log(`  compensate charge: refund ${(result as { charge: string }).charge} (${failedStep}: ${error})`),
  },
  {
    name: 'ship',
    maxRetries: 2,
    backoff: { type: 'exponential', delayMs: 50 },
    timeoutMs: 1_000,
    run: ({ payload, results }, step) => {
      console.log(`  ship attempt ${step.attempt}`)
      if (!payload.carrierUp) throw new Error('carrier down')
      return { tracking: `T-${payload.id}`, after: Object.keys(results) }
    },
  },
]

console.log('order 1:')
const { results } = await new Workflow(steps).execute({ id: '1', amount: 4200, carrierUp: true })
console.log('results:', JSON.stringify(results))

console.log('order 2:')
try {
  await new Workflow(steps).execute({ id: '2', amount: 990, carrierUp: false })
} catch (err) {
  if (err instanceof WorkflowError) console.log(`WorkflowError: ${err.message}`)
}
