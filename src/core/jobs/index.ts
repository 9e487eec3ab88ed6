/** The jobs module's public surface. */
export { BUILT_IN_JOBS, type BuiltInJobs, EmailBatchSchema, type EmailJobDeps } from './built-in.js'
export {
  FLEET_JOBS,
  type FleetJobDeps,
  PROVISION_FIRST_JOB,
  PROVISIONING_JOBS,
  type ProvisioningJobDeps,
  ProvisionPayload,
} from '../tenancy/provisioning-jobs.js'
export { createQueues, QUEUE_NAMES, type Queues, workerConnection } from './queues.js'
export { JOB_STATUSES, type JobRecord, type JobStatus } from './records.js'
export {
  type Backoff,
  DEFAULT_BACKOFF,
  DEFAULT_MAX_RETRIES,
  type DepsOf,
  derivedJobId,
  type FollowUp,
  type JobContext,
  type JobDefinition,
  type JobRegistry,
  type JobScope,
  type PayloadOf,
  pipeline,
  pipelineStart,
  type SubmitOptions,
  type SubmittedJob,
  systemJob,
  type TenantJobContext,
  TenantIdSchema,
  tenantJob,
} from './registry.js'
export {
  createTaskManager,
  type JobView,
  type JobWorkers,
  type ListJobsFilter,
  type TaskManager,
  type TaskManagerDeps,
  type WorkerOptions,
} from './task-manager.js'
export { createTenantSlots, type TenantSlots } from './tenant-slots.js'
