-- sys_audit_logs is append-only: the database itself refuses to change or remove history.
CREATE OR REPLACE FUNCTION sys_audit_logs_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'sys_audit_logs is append-only: % is not allowed', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$;
--> statement-breakpoint
CREATE TRIGGER sys_audit_logs_no_update_delete
  BEFORE UPDATE OR DELETE ON sys_audit_logs
  FOR EACH ROW EXECUTE FUNCTION sys_audit_logs_append_only();
--> statement-breakpoint
CREATE TRIGGER sys_audit_logs_no_truncate
  BEFORE TRUNCATE ON sys_audit_logs
  FOR EACH STATEMENT EXECUTE FUNCTION sys_audit_logs_append_only();
