-- Component roles (phantom store roles) are granted UPDATE on the few columns their job
-- writes; these triggers keep even those writes to what the job is. A revocation only
-- moves forward (PutRevocation already writes GREATEST): no one lowers one to let
-- revoked sessions or nodes back in. A disabled access key is enabled again only by a
-- member of the table owner's role (the operator's login): the detector, which disables
-- keys, cannot undo a disable.

CREATE FUNCTION phantom_revocation_forward() RETURNS trigger
	LANGUAGE plpgsql
	AS $$
BEGIN
	IF NEW.before < OLD.before THEN
		RAISE EXCEPTION 'permission denied: a revocation (%) only moves forward', TG_TABLE_NAME
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER revocations_forward BEFORE UPDATE ON revocations
	FOR EACH ROW EXECUTE FUNCTION phantom_revocation_forward();
CREATE TRIGGER node_revocations_forward BEFORE UPDATE ON node_revocations
	FOR EACH ROW EXECUTE FUNCTION phantom_revocation_forward();

CREATE FUNCTION phantom_access_key_enable() RETURNS trigger
	LANGUAGE plpgsql
	AS $$
BEGIN
	IF OLD.status = 'Inactive' AND NEW.status = 'Active' AND NOT pg_has_role(current_user,
		(SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE') THEN
		RAISE EXCEPTION 'permission denied: only the store''s owner enables an access key again'
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER access_keys_enable BEFORE UPDATE ON access_keys
	FOR EACH ROW EXECUTE FUNCTION phantom_access_key_enable();
